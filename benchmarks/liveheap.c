// liveheap: what a process keeps allocated, by allocation size (docs/performance-log.md, "Idle connections,
// third round"). An LD_PRELOAD that records every live heap block in a table of its own.
//
//   gcc -O2 -shared -fPIC -o /tmp/liveheap.so benchmarks/liveheap.c -lpthread
//   LD_PRELOAD=/tmp/liveheap.so .build-bench/release/starling ... &
//   touch /tmp/liveheap.cmd     # mark: blocks allocated from now on are counted
//   ... open the connections ...
//   touch /tmp/liveheap.cmd     # report: blocks allocated since the mark and still live, by size
//   cat /tmp/liveheap.txt
//
// LIVEHEAP_TRACE=<size> prints to stderr the call stack of about one in 97 allocations of exactly that size made
// after the mark (resolve the addresses with addr2line -f -C -e <binary>, then swift demangle).
// A measuring tool: the table is 128 MiB of address space and a lock per call, so RSS and speed are not
// representative while it is loaded.
#define _GNU_SOURCE
#include <execinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

enum { capacity = 1u << 23 };
static const uintptr_t tombstone = 1;

typedef struct {
    uintptr_t address; // 0: empty, 1: removed
    uint32_t size;
    uint32_t afterMark;
} Block;

static Block *table;
static volatile int tableLock;
static int marked;       // 0 before the first touch, 1 after it
static long traceSize = -1;
static __thread int tracing;

static void lock(void) { while (__sync_lock_test_and_set(&tableLock, 1)) {} }
static void unlock(void) { __sync_lock_release(&tableLock); }

static uint32_t slot(uintptr_t address) {
    uint64_t h = (uint64_t)(address >> 4) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 40) & (capacity - 1);
}

static void trace(size_t size) {
    static unsigned long seen;
    if ((seen++ % 97) != 0) return;
    tracing = 1;
    void *frames[20];
    int count = backtrace(frames, 20);
    char header[64];
    int length = snprintf(header, sizeof header, "--- size %zu\n", size);
    write(2, header, length);
    backtrace_symbols_fd(frames, count, 2);
    tracing = 0;
}

static void record(void *pointer, size_t size) {
    if (!pointer || !table) return;
    uintptr_t address = (uintptr_t)pointer;
    lock();
    uint32_t i = slot(address);
    while (table[i].address > tombstone && table[i].address != address) i = (i + 1) & (capacity - 1);
    table[i] = (Block){address, (uint32_t)size, (uint32_t)marked};
    unlock();
    if (marked && (long)size == traceSize && !tracing) trace(size);
}

static void forget(void *pointer) {
    if (!pointer || !table) return;
    uintptr_t address = (uintptr_t)pointer;
    lock();
    for (uint32_t i = slot(address); table[i].address; i = (i + 1) & (capacity - 1)) {
        if (table[i].address == address) {
            table[i].address = tombstone;
            break;
        }
    }
    unlock();
}

typedef struct { long size, count; } Row;

static int bytesDescending(const void *a, const void *b) {
    const Row *x = a, *y = b;
    long left = x->size * x->count, right = y->size * y->count;
    return (right > left) - (right < left);
}

static void report(void) {
    enum { maxRows = 70000 };
    static Row rows[maxRows];
    int used = 0;
    long blocks = 0, bytes = 0;
    lock();
    for (uint32_t i = 0; i < capacity; i++) {
        if (table[i].address <= tombstone || !table[i].afterMark) continue;
        int r = 0;
        while (r < used && rows[r].size != table[i].size) r++;
        if (r == used) {
            if (used == maxRows) continue;
            rows[used++] = (Row){table[i].size, 0};
        }
        rows[r].count++;
        blocks++;
        bytes += malloc_usable_size((void *)table[i].address) + 8; // + glibc's chunk header
    }
    unlock();
    qsort(rows, used, sizeof rows[0], bytesDescending);
    FILE *out = fopen("/tmp/liveheap.txt", "w");
    if (!out) return;
    fprintf(out, "live since the mark: %ld blocks, %ld bytes (usable size + 8 per block)\n", blocks, bytes);
    for (int r = 0; r < used && r < 60; r++) {
        fprintf(out, "size %7ld x %9ld = %11ld\n", rows[r].size, rows[r].count, rows[r].size * rows[r].count);
    }
    fclose(out);
}

static void *watch(void *unused) {
    (void)unused;
    for (;;) {
        usleep(200000);
        if (unlink("/tmp/liveheap.cmd") != 0) continue;
        if (!marked) marked = 1; else report();
    }
    return NULL;
}

__attribute__((constructor)) static void start(void) {
    table = mmap(NULL, sizeof(Block) * capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED) table = NULL;
    const char *size = getenv("LIVEHEAP_TRACE");
    if (size) traceSize = atol(size);
    pthread_t watcher;
    pthread_create(&watcher, NULL, watch, NULL);
}

void *malloc(size_t size) { void *p = __libc_malloc(size); record(p, size); return p; }
void *calloc(size_t count, size_t size) { void *p = __libc_calloc(count, size); record(p, count * size); return p; }
void *realloc(void *old, size_t size) { forget(old); void *p = __libc_realloc(old, size); record(p, size); return p; }
void free(void *pointer) { forget(pointer); __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { void *p = __libc_memalign(alignment, size); record(p, size); return p; }
void *aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }
int posix_memalign(void **result, size_t alignment, size_t size) {
    void *p = memalign(alignment, size);
    if (!p) return 12; // ENOMEM
    *result = p;
    return 0;
}
