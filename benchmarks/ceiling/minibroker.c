/*
 * minibroker.c: a minimal, fast STOMP 1.2 over WebSocket broker, written as a *ceiling reference*.
 *
 * It does the least work a broker must do per delivery (parse the SEND once, build the MESSAGE once, copy
 * it into each subscriber's output buffer, one write per connection per event-loop iteration) so that the
 * same load generator run against it and against Starling shows how close Starling gets to what this
 * machine can do. It is not a product: no queues, no acks, no persistence, no heart-beats, no deflate,
 * no wildcards, no authentication. See README.md next to this file.
 *
 * Build:  cc -O2 -o minibroker minibroker.c -lcrypto        (OpenSSL for SHA-1 in the handshake)
 * Run:    ./minibroker [--port 18190] [--host 127.0.0.1]
 *
 * Design, in one paragraph: one thread, one epoll instance (level-triggered), non-blocking sockets with
 * TCP_NODELAY. A readable socket is read once per iteration into a shared buffer and parsed in place:
 * WebSocket frames are unmasked where they lie and their payload is fed to the STOMP parser as a byte
 * stream (so several STOMP frames per WebSocket message, or one STOMP frame split over several messages,
 * both work). Only bytes of an incomplete frame are copied into the connection's own buffers. A SEND is
 * turned into the part of the MESSAGE that all subscribers share (headers from message-id on, body, NUL)
 * once; each subscriber gets a WebSocket header, its own "MESSAGE\nsubscription:<id>\n" prefix and that
 * shared part appended to its output buffer, and is marked dirty. After all events of an iteration are
 * handled, each dirty connection gets exactly one write(); what the kernel does not take stays queued
 * and EPOLLOUT is watched until it drains. Connections that fail are destroyed only at the end of the
 * iteration, so no pointer held during the iteration dangles.
 *
 * SIGUSR1 prints counters to stderr; SIGINT/SIGTERM free everything and exit 0 (handy under valgrind).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------- limits */

#define DEFAULT_PORT 18190
#define MAX_BODY (1u << 20)           /* largest STOMP body (bytes) */
#define MAX_HEADER_BLOCK (64u << 10)  /* room for a STOMP frame's command and headers */
#define MAX_FRAME (MAX_BODY + MAX_HEADER_BLOCK) /* largest STOMP frame, and largest WebSocket frame payload */
#define MAX_HEADERS 64                /* STOMP headers per frame */
#define MAX_SUBS_PER_CONN 1024        /* subscriptions per connection */
#define MAX_PENDING (4u << 20)        /* queued output bytes before a client is dropped as a slow consumer */
#define MAX_HTTP_REQUEST 8192         /* the upgrade request's header block */
#define READ_CHUNK (64 * 1024)        /* bytes asked of one read() */
#define MAX_EVENTS 1024               /* events taken from one epoll_wait() */
#define OUT_INITIAL 4096              /* first allocation of an output buffer */
#define OUT_KEEP (256 * 1024)         /* a drained output buffer larger than this is freed */
#define CLOSE_GRACE_MS 5000           /* how long a closing connection may take to finish before it is cut */

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };

/* WebSocket close codes (RFC 6455 section 7.4.1). */
enum { WS_NORMAL = 1000, WS_PROTOCOL_ERROR = 1002, WS_TOO_BIG = 1009 };

/* --------------------------------------------------------------------------------- byte buffers */

/* A growable byte array. `data` is NULL until the first byte is stored. */
typedef struct {
    char *data;
    size_t len, cap;
} buf;

static void oom(void) {
    fputs("minibroker: out of memory\n", stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) oom();
    return q;
}

/* Makes room for `extra` more bytes and returns where they go (the caller advances `len`). */
static char *buf_reserve(buf *b, size_t extra, size_t initial) {
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : initial;
        while (cap - b->len < extra) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

static void buf_append(buf *b, const void *p, size_t n) {
    memcpy(buf_reserve(b, n, 256), p, n);
    b->len += n;
}

#define buf_lit(b, s) buf_append((b), (s), sizeof(s) - 1)

static void buf_free(buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Drops the first `n` bytes; an emptied buffer is freed (connections keep no input memory when idle). */
static void buf_consume(buf *b, size_t n) {
    if (n >= b->len) {
        buf_free(b);
    } else if (n > 0) {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
}

/* Writes `v` in decimal, returns the number of digits. */
static size_t fmt_u64(char *dst, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

static void buf_u64(buf *b, uint64_t v) {
    b->len += fmt_u64(buf_reserve(b, 20, 256), v);
}

/* ---------------------------------------------------------------------------------- data model */

enum conn_state {
    ST_HTTP,     /* waiting for the HTTP upgrade request */
    ST_OPEN,     /* WebSocket open: STOMP frames flow */
    ST_CLOSING,  /* a final answer (close frame, ERROR, HTTP error) is queued: flush it, then shut down */
    ST_DRAINING, /* our side is shut down: discard input until the peer closes (or the grace period ends) */
    ST_DEAD,     /* to be destroyed at the end of this loop iteration */
};

struct topic;
struct sub;

typedef struct conn {
    int fd;
    uint8_t state;
    bool stomp_connected; /* CONNECT seen */
    bool in_message;      /* a fragmented WebSocket message is in progress (continuations expected) */
    bool dirty;           /* on the dirty list: has output to write at the end of the iteration */
    bool blocked;         /* the kernel took not all output: no write until EPOLLOUT says there is room */
    bool out_watched;     /* EPOLLOUT is in the epoll registration */
    buf in;               /* raw bytes of an incomplete HTTP request or WebSocket frame */
    buf stomp;            /* unmasked payload bytes of an incomplete STOMP frame */
    buf out;              /* output not yet written; bytes before out_off are already written */
    size_t out_off;
    struct sub **subs;    /* this connection's subscriptions */
    uint32_t nsubs, subs_cap;
    int64_t deadline_ms;  /* ST_CLOSING / ST_DRAINING: cut at this time */
    struct conn *closing_prev, *closing_next; /* the list of closing connections, oldest first */
} conn;

/* One subscription. `head` is the per-subscriber start of every MESSAGE: "MESSAGE\nsubscription:<id>\n". */
typedef struct sub {
    conn *c;
    struct topic *t;
    uint32_t pos;     /* index in t->subs (swap-remove keeps it up to date) */
    uint32_t id_len;
    uint32_t head_len;
    char head[];      /* the id is at head + HEAD_PREFIX_LEN */
} sub;

#define HEAD_PREFIX "MESSAGE\nsubscription:"
#define HEAD_PREFIX_LEN (sizeof(HEAD_PREFIX) - 1)

/* A destination with at least one subscriber (exact match only), in a chained hash table. */
typedef struct topic {
    struct topic *next;
    uint64_t hash;
    sub **subs;
    uint32_t nsubs, cap;
    uint32_t len;
    char name[];      /* raw (still STOMP-escaped) bytes; the escaping is canonical so raw equality is enough */
} topic;

/* A parsed STOMP frame: pointers into the input, valid while the frame is being handled. */
typedef struct {
    const char *name, *value;
    size_t name_len, value_len;
} header;

typedef struct {
    const char *command;
    size_t command_len;
    header headers[MAX_HEADERS];
    int nheaders;
    const char *body;
    size_t body_len;
} frame;

/* --------------------------------------------------------------------------------- global state */

static int g_epoll = -1;
static int g_listen = -1;
static char g_rbuf[READ_CHUNK];        /* reads land here when the connection has no partial input */
static buf g_msg;                      /* the shared part of the MESSAGE being fanned out */
static buf g_tmp;                      /* small STOMP replies being built */
static conn **g_by_fd;                 /* fd -> connection, for shutdown and counters */
static size_t g_by_fd_cap;
static conn **g_dirty;                 /* connections with output to write this iteration */
static size_t g_ndirty, g_dirty_cap;
static conn **g_dead;                  /* connections to destroy at the end of this iteration */
static size_t g_ndead, g_dead_cap;
static conn *g_closing_head, *g_closing_tail;
static topic **g_buckets;
static size_t g_nbuckets, g_ntopics;
static uint64_t g_next_message_id = 1;
static int64_t g_accept_resume_ms;     /* > 0: accepting is paused (out of file descriptors) until then */
static volatile sig_atomic_t g_stop, g_dump;

/* Counters for SIGUSR1. */
static uint64_t g_nconns, g_nsubs, g_sends, g_deliveries, g_accepted;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void push_ptr(conn ***array, size_t *n, size_t *cap, conn *c) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *array = xrealloc(*array, *cap * sizeof **array);
    }
    (*array)[(*n)++] = c;
}

/* ------------------------------------------------------------------------- connection lifecycle */

/* Marks `c` for destruction at the end of the iteration; it is ignored from now on. */
static void conn_kill(conn *c) {
    if (c->state == ST_DEAD) return;
    c->state = ST_DEAD;
    push_ptr(&g_dead, &g_ndead, &g_dead_cap, c);
}

static void mark_dirty(conn *c) {
    if (!c->dirty) {
        c->dirty = true;
        push_ptr(&g_dirty, &g_ndirty, &g_dirty_cap, c);
    }
}

static void closing_unlink(conn *c) {
    if (c->closing_prev) c->closing_prev->closing_next = c->closing_next;
    else if (g_closing_head == c) g_closing_head = c->closing_next;
    else return; /* not on the list */
    if (c->closing_next) c->closing_next->closing_prev = c->closing_prev;
    else g_closing_tail = c->closing_prev;
    c->closing_prev = c->closing_next = NULL;
}

/* Whatever is queued is the last output: flush it, then shut down (see flush_conn). */
static void start_closing(conn *c) {
    if (c->state != ST_HTTP && c->state != ST_OPEN) return;
    c->state = ST_CLOSING;
    c->deadline_ms = now_ms() + CLOSE_GRACE_MS;
    c->closing_prev = g_closing_tail;
    c->closing_next = NULL;
    if (g_closing_tail) g_closing_tail->closing_next = c;
    else g_closing_head = c;
    g_closing_tail = c;
    mark_dirty(c); /* flush_conn moves on to ST_DRAINING once the output is written */
}

/* Adds or removes EPOLLOUT from the registration (only when it changes: no syscall in the common case). */
static void watch_writable(conn *c, bool on) {
    c->blocked = on;
    if (c->out_watched == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g_epoll, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_kill(c);
        return;
    }
    c->out_watched = on;
}

static void topic_remove(sub *s);

/* Frees everything `c` owns; its subscriptions leave their topics. */
static void conn_destroy(conn *c) {
    closing_unlink(c);
    for (uint32_t i = 0; i < c->nsubs; i++) {
        topic_remove(c->subs[i]);
        free(c->subs[i]);
    }
    g_nsubs -= c->nsubs;
    free(c->subs);
    buf_free(&c->in);
    buf_free(&c->stomp);
    buf_free(&c->out);
    g_by_fd[c->fd] = NULL;
    close(c->fd); /* also removes it from the epoll set */
    free(c);
    g_nconns--;
}

/* ------------------------------------------------------------------------------------ output */

/* Room for `n` more output bytes; written bytes at the front are dropped first when that avoids growing. */
static char *out_reserve(conn *c, size_t n) {
    buf *b = &c->out;
    if (b->cap - b->len < n && c->out_off > 0) {
        memmove(b->data, b->data + c->out_off, b->len - c->out_off);
        b->len -= c->out_off;
        c->out_off = 0;
    }
    return buf_reserve(b, n, OUT_INITIAL);
}

/* A server frame header (FIN set, unmasked) for a payload of `len` bytes; returns its size (2, 4 or 10). */
static size_t ws_header(char *dst, int opcode, size_t len) {
    unsigned char *d = (unsigned char *)dst;
    d[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        d[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        d[1] = 126;
        d[2] = (unsigned char)(len >> 8);
        d[3] = (unsigned char)len;
        return 4;
    }
    d[1] = 127;
    for (int i = 0; i < 8; i++) d[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static void send_frame(conn *c, int opcode, const char *payload, size_t len) {
    char *d = out_reserve(c, len + 10);
    size_t h = ws_header(d, opcode, len);
    memcpy(d + h, payload, len);
    c->out.len += h + len;
    mark_dirty(c);
}

static void send_raw(conn *c, const char *bytes, size_t len) {
    memcpy(out_reserve(c, len), bytes, len);
    c->out.len += len;
    mark_dirty(c);
}

/* A close frame with `code`, then the closing sequence. */
static void ws_close(conn *c, int code) {
    char payload[2] = {(char)(code >> 8), (char)(code & 0xff)};
    send_frame(c, OP_CLOSE, payload, 2);
    start_closing(c);
}

/* The one write of this iteration for `c`. What the kernel does not take waits for EPOLLOUT. */
static void flush_conn(conn *c) {
    size_t pending = c->out.len - c->out_off;
    if (pending) {
        ssize_t w = write(c->fd, c->out.data + c->out_off, pending);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) watch_writable(c, true);
            else conn_kill(c);
            return;
        }
        c->out_off += (size_t)w;
        if ((size_t)w < pending) {
            watch_writable(c, true);
            return;
        }
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > OUT_KEEP) buf_free(&c->out);
    watch_writable(c, false);
    if (c->state == ST_CLOSING) {
        /* Everything was said: half-close and wait for the peer to close its side (a plain close() with
         * unread input could send a reset that destroys our last frames in the peer's receive queue). */
        shutdown(c->fd, SHUT_WR);
        c->state = ST_DRAINING;
    }
}

/* ------------------------------------------------------------------------------------ topics */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static topic *topic_find(const char *name, size_t len, uint64_t hash) {
    if (!g_nbuckets) return NULL;
    for (topic *t = g_buckets[hash & (g_nbuckets - 1)]; t; t = t->next)
        if (t->hash == hash && t->len == len && memcmp(t->name, name, len) == 0) return t;
    return NULL;
}

static void table_grow(void) {
    size_t n = g_nbuckets ? g_nbuckets * 2 : 1024;
    topic **b = calloc(n, sizeof *b);
    if (!b) oom();
    for (size_t i = 0; i < g_nbuckets; i++) {
        for (topic *t = g_buckets[i], *next; t; t = next) {
            next = t->next;
            t->next = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
        }
    }
    free(g_buckets);
    g_buckets = b;
    g_nbuckets = n;
}

static topic *topic_get(const char *name, size_t len) {
    uint64_t hash = hash_bytes(name, len);
    topic *t = topic_find(name, len, hash);
    if (t) return t;
    if (g_ntopics >= g_nbuckets) table_grow();
    t = xrealloc(NULL, sizeof *t + len);
    memset(t, 0, sizeof *t);
    t->hash = hash;
    t->len = (uint32_t)len;
    memcpy(t->name, name, len);
    t->next = g_buckets[hash & (g_nbuckets - 1)];
    g_buckets[hash & (g_nbuckets - 1)] = t;
    g_ntopics++;
    return t;
}

static void topic_add(topic *t, sub *s) {
    if (t->nsubs == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->subs = xrealloc(t->subs, t->cap * sizeof *t->subs);
    }
    s->t = t;
    s->pos = t->nsubs;
    t->subs[t->nsubs++] = s;
}

/* Takes `s` out of its topic (swap with the last); an empty topic is freed. */
static void topic_remove(sub *s) {
    topic *t = s->t;
    sub *last = t->subs[--t->nsubs];
    t->subs[s->pos] = last;
    last->pos = s->pos;
    if (t->nsubs) return;
    topic **link = &g_buckets[t->hash & (g_nbuckets - 1)];
    while (*link != t) link = &(*link)->next;
    *link = t->next;
    free(t->subs);
    free(t);
    g_ntopics--;
}

/* ------------------------------------------------------------------------------ STOMP replies */

static const header *frame_get(const frame *f, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < f->nheaders; i++)
        if (f->headers[i].name_len == n && memcmp(f->headers[i].name, name, n) == 0) return &f->headers[i];
    return NULL; /* the first occurrence wins (STOMP 1.2 "Repeated Header Entries") */
}

static bool header_is(const header *h, const char *name) {
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

static void send_receipt(conn *c, const header *receipt) {
    if (!receipt) return;
    g_tmp.len = 0;
    buf_lit(&g_tmp, "RECEIPT\nreceipt-id:");
    buf_append(&g_tmp, receipt->value, receipt->value_len);
    buf_lit(&g_tmp, "\n\n\0");
    send_frame(c, OP_TEXT, g_tmp.data, g_tmp.len);
}

/* ERROR (with the text as `message` header and body), then close. `text` must not need escaping. */
static void stomp_error(conn *c, const char *text, const frame *f) {
    const header *receipt = f ? frame_get(f, "receipt") : NULL;
    size_t n = strlen(text);
    g_tmp.len = 0;
    buf_lit(&g_tmp, "ERROR\nmessage:");
    buf_append(&g_tmp, text, n);
    if (receipt) {
        buf_lit(&g_tmp, "\nreceipt-id:");
        buf_append(&g_tmp, receipt->value, receipt->value_len);
    }
    buf_lit(&g_tmp, "\ncontent-type:text/plain\ncontent-length:");
    buf_u64(&g_tmp, n);
    buf_lit(&g_tmp, "\n\n");
    buf_append(&g_tmp, text, n);
    buf_lit(&g_tmp, "\0");
    send_frame(c, OP_TEXT, g_tmp.data, g_tmp.len);
    ws_close(c, WS_PROTOCOL_ERROR);
}

/* --------------------------------------------------------------------------------- STOMP commands */

static bool command_is(const frame *f, const char *name) {
    size_t n = strlen(name);
    return f->command_len == n && memcmp(f->command, name, n) == 0;
}

/* Whether the comma-separated list in `h` contains `token`. */
static bool list_contains(const header *h, const char *token) {
    size_t n = strlen(token);
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        while (p < item_end && *p == ' ') p++;
        const char *e = item_end;
        while (e > p && e[-1] == ' ') e--;
        if ((size_t)(e - p) == n && memcmp(p, token, n) == 0) return true;
        p = comma ? comma + 1 : end;
    }
    return false;
}

static void cmd_connect(conn *c, const frame *f) {
    if (c->stomp_connected) {
        stomp_error(c, "already connected", f);
        return;
    }
    const header *versions = frame_get(f, "accept-version");
    if (versions && !list_contains(versions, "1.2")) {
        stomp_error(c, "only STOMP 1.2 is supported", f);
        return;
    }
    c->stomp_connected = true;
    /* heart-beat 0,0: we send none and expect none (a client that sends some anyway is fine: EOLs are
     * skipped between frames). */
    static const char connected[] = "CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:minibroker/1.0\n\n";
    send_frame(c, OP_TEXT, connected, sizeof connected); /* sizeof includes the terminating NUL */
}

static void cmd_subscribe(conn *c, const frame *f) {
    const header *id = frame_get(f, "id"), *dest = frame_get(f, "destination");
    if (!id || !dest) {
        stomp_error(c, "SUBSCRIBE needs an id and a destination header", f);
        return;
    }
    for (uint32_t i = 0; i < c->nsubs; i++) {
        if (c->subs[i]->id_len == id->value_len &&
            memcmp(c->subs[i]->head + HEAD_PREFIX_LEN, id->value, id->value_len) == 0) {
            stomp_error(c, "subscription id already in use on this connection", f);
            return;
        }
    }
    if (c->nsubs >= MAX_SUBS_PER_CONN) {
        stomp_error(c, "too many subscriptions on this connection", f);
        return;
    }
    size_t head_len = HEAD_PREFIX_LEN + id->value_len + 1;
    sub *s = xrealloc(NULL, sizeof *s + head_len);
    s->c = c;
    s->id_len = (uint32_t)id->value_len;
    s->head_len = (uint32_t)head_len;
    memcpy(s->head, HEAD_PREFIX, HEAD_PREFIX_LEN);
    memcpy(s->head + HEAD_PREFIX_LEN, id->value, id->value_len);
    s->head[head_len - 1] = '\n';
    topic_add(topic_get(dest->value, dest->value_len), s);
    if (c->nsubs == c->subs_cap) {
        c->subs_cap = c->subs_cap ? c->subs_cap * 2 : 4;
        c->subs = xrealloc(c->subs, c->subs_cap * sizeof *c->subs);
    }
    c->subs[c->nsubs++] = s;
    g_nsubs++;
    send_receipt(c, frame_get(f, "receipt"));
}

static void cmd_unsubscribe(conn *c, const frame *f) {
    const header *id = frame_get(f, "id");
    if (!id) {
        stomp_error(c, "UNSUBSCRIBE needs an id header", f);
        return;
    }
    for (uint32_t i = 0; i < c->nsubs; i++) {
        sub *s = c->subs[i];
        if (s->id_len == id->value_len && memcmp(s->head + HEAD_PREFIX_LEN, id->value, id->value_len) == 0) {
            topic_remove(s);
            free(s);
            c->subs[i] = c->subs[--c->nsubs];
            g_nsubs--;
            break;
        }
    }
    /* An unknown id is not an error: the subscription is gone either way. */
    send_receipt(c, frame_get(f, "receipt"));
}

/* Headers of a SEND that are not copied into the MESSAGE (we write our own, or they concern the SEND). */
static bool header_dropped(const header *h) {
    return header_is(h, "receipt") || header_is(h, "content-length") || header_is(h, "destination") ||
           header_is(h, "message-id") || header_is(h, "subscription");
}

/* Appends the MESSAGE to every subscriber of `t`: its WebSocket header, its own head, the shared part. */
static void fan_out(topic *t, const char *shared, size_t shared_len) {
    for (uint32_t i = 0; i < t->nsubs; i++) {
        sub *s = t->subs[i];
        conn *c = s->c;
        if (c->state != ST_OPEN) continue;
        size_t len = s->head_len + shared_len;
        char *d = out_reserve(c, len + 10);
        size_t h = ws_header(d, OP_TEXT, len);
        memcpy(d + h, s->head, s->head_len);
        memcpy(d + h + s->head_len, shared, shared_len);
        c->out.len += h + len;
        mark_dirty(c);
        g_deliveries++;
        if (c->out.len - c->out_off > MAX_PENDING) conn_kill(c); /* slow consumer */
    }
}

static void cmd_send(conn *c, const frame *f) {
    const header *dest = frame_get(f, "destination");
    if (!dest) {
        stomp_error(c, "SEND needs a destination header", f);
        return;
    }
    g_sends++;
    uint64_t message_id = g_next_message_id++;
    topic *t = topic_find(dest->value, dest->value_len, hash_bytes(dest->value, dest->value_len));
    if (t) {
        /* The part of the MESSAGE every subscriber gets: built once per SEND. */
        g_msg.len = 0;
        buf_lit(&g_msg, "message-id:");
        buf_u64(&g_msg, message_id);
        buf_lit(&g_msg, "\ndestination:");
        buf_append(&g_msg, dest->value, dest->value_len);
        buf_lit(&g_msg, "\n");
        for (int i = 0; i < f->nheaders; i++) {
            const header *h = &f->headers[i];
            if (header_dropped(h)) continue;
            char *d = buf_reserve(&g_msg, h->name_len + h->value_len + 2, 256);
            memcpy(d, h->name, h->name_len);
            d[h->name_len] = ':';
            memcpy(d + h->name_len + 1, h->value, h->value_len);
            d[h->name_len + 1 + h->value_len] = '\n';
            g_msg.len += h->name_len + h->value_len + 2;
        }
        buf_lit(&g_msg, "content-length:");
        buf_u64(&g_msg, f->body_len);
        buf_lit(&g_msg, "\n\n");
        buf_append(&g_msg, f->body, f->body_len);
        buf_lit(&g_msg, "\0");
        fan_out(t, g_msg.data, g_msg.len);
    }
    if (c->state == ST_OPEN) send_receipt(c, frame_get(f, "receipt"));
}

static void stomp_dispatch(conn *c, const frame *f) {
    if (!c->stomp_connected) {
        if (command_is(f, "CONNECT") || command_is(f, "STOMP")) cmd_connect(c, f);
        else stomp_error(c, "the first frame must be CONNECT", f);
        return;
    }
    if (command_is(f, "SEND")) {
        cmd_send(c, f);
    } else if (command_is(f, "SUBSCRIBE")) {
        cmd_subscribe(c, f);
    } else if (command_is(f, "UNSUBSCRIBE")) {
        cmd_unsubscribe(c, f);
    } else if (command_is(f, "ACK") || command_is(f, "NACK")) {
        send_receipt(c, frame_get(f, "receipt")); /* no client acknowledgement: nothing to do */
    } else if (command_is(f, "DISCONNECT")) {
        send_receipt(c, frame_get(f, "receipt"));
        ws_close(c, WS_NORMAL);
    } else if (command_is(f, "CONNECT") || command_is(f, "STOMP")) {
        cmd_connect(c, f); /* answers ERROR: already connected */
    } else {
        stomp_error(c, "unsupported command", f);
    }
}

/* -------------------------------------------------------------------------------- STOMP parser */

/* The next line of [p, end): sets *line_end (a CR before the LF excluded) and returns the byte after the LF,
 * or NULL when there is no LF yet. */
static const char *next_line(const char *p, const char *end, const char **line_end) {
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf) return NULL;
    *line_end = (lf > p && lf[-1] == '\r') ? lf - 1 : lf;
    return lf + 1;
}

/* Parses one frame at the start of [p, p + n). Returns its size including the NUL, 0 if it is not complete
 * yet, -1 on a protocol error (*error says which). */
static long stomp_parse(const char *p, size_t n, frame *f, const char **error) {
    const char *end = p + n, *line_end, *q;
    if (!(q = next_line(p, end, &line_end))) return 0;
    f->command = p;
    f->command_len = (size_t)(line_end - p);
    f->nheaders = 0;
    long content_length = -1;
    for (;;) {
        const char *line = q;
        if (!(q = next_line(line, end, &line_end))) return 0;
        if (line_end == line) break; /* the blank line before the body */
        if (f->nheaders == MAX_HEADERS) {
            *error = "too many headers";
            return -1;
        }
        const char *colon = memchr(line, ':', (size_t)(line_end - line));
        if (!colon || colon == line) {
            *error = "malformed header line";
            return -1;
        }
        header *h = &f->headers[f->nheaders++];
        h->name = line;
        h->name_len = (size_t)(colon - line);
        h->value = colon + 1;
        h->value_len = (size_t)(line_end - colon - 1);
        if (content_length < 0 && header_is(h, "content-length")) {
            if (h->value_len == 0 || h->value_len > 9) {
                *error = "invalid content-length";
                return -1;
            }
            content_length = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                unsigned digit = (unsigned char)h->value[i] - '0';
                if (digit > 9) {
                    *error = "invalid content-length";
                    return -1;
                }
                content_length = content_length * 10 + digit;
            }
            if (content_length > MAX_BODY) {
                *error = "frame too large";
                return -1;
            }
        }
    }
    f->body = q;
    const char *nul;
    if (content_length >= 0) {
        if ((size_t)(end - q) <= (size_t)content_length) return 0;
        nul = q + content_length;
        if (*nul != '\0') {
            *error = "body longer than content-length (no NUL after it)";
            return -1;
        }
    } else if (!(nul = memchr(q, '\0', (size_t)(end - q)))) {
        return 0;
    }
    f->body_len = (size_t)(nul - q);
    return (long)(nul + 1 - p);
}

/* Handles every complete frame in [p, p + n) (EOLs between frames are heart-beats and are skipped);
 * returns the bytes consumed. */
static size_t stomp_parse_all(conn *c, const char *p, size_t n) {
    static frame f; /* one at a time; static because MAX_HEADERS headers make it large for the stack */
    size_t off = 0;
    while (c->state == ST_OPEN) {
        while (off < n && (p[off] == '\n' || (p[off] == '\r' && off + 1 < n && p[off + 1] == '\n')))
            off += p[off] == '\r' ? 2 : 1;
        if (off == n) break;
        const char *error = NULL;
        long used = stomp_parse(p + off, n - off, &f, &error);
        if (used < 0) {
            stomp_error(c, error, NULL);
            break;
        }
        if (used == 0) break;
        off += (size_t)used;
        stomp_dispatch(c, &f);
    }
    return off;
}

/* STOMP bytes from a WebSocket message (whole or a fragment). Parsed in place when nothing is pending. */
static void stomp_input(conn *c, const char *p, size_t n) {
    if (c->stomp.len == 0) {
        size_t used = stomp_parse_all(c, p, n);
        if (used < n && c->state == ST_OPEN) buf_append(&c->stomp, p + used, n - used);
    } else {
        buf_append(&c->stomp, p, n);
        size_t used = stomp_parse_all(c, c->stomp.data, c->stomp.len);
        if (c->state == ST_OPEN) buf_consume(&c->stomp, used);
    }
    if (c->state == ST_OPEN && c->stomp.len > MAX_FRAME) stomp_error(c, "frame too large", NULL);
}

/* ---------------------------------------------------------------------------- WebSocket frames */

/* XORs `n` bytes with the 4-byte masking key, 8 bytes at a time. */
static void unmask(char *p, size_t n, const unsigned char key[4]) {
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 | ((uint64_t)k32 << 32);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++) p[i] ^= (char)key[i & 3];
}

/* Handles every complete client frame in [p, p + n) (unmasking in place); returns the bytes consumed. */
static size_t ws_input(conn *c, char *p, size_t n) {
    size_t off = 0;
    while (c->state == ST_OPEN && n - off >= 2) {
        const unsigned char *h = (const unsigned char *)p + off;
        bool fin = h[0] & 0x80;
        int opcode = h[0] & 0x0f;
        size_t header_len = 2 + 4, len = h[1] & 0x7f;
        if ((h[0] & 0x70) || !(h[1] & 0x80)) { /* RSV bits (no extension) or an unmasked client frame */
            ws_close(c, WS_PROTOCOL_ERROR);
            break;
        }
        if (len == 126) header_len += 2;
        else if (len == 127) header_len += 8;
        if (n - off < header_len) break;
        if (len == 126) {
            len = (size_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            uint64_t l = 0;
            for (int i = 0; i < 8; i++) l = l << 8 | h[2 + i];
            len = l > MAX_FRAME ? MAX_FRAME + 1 : (size_t)l;
        }
        if (len > MAX_FRAME) {
            ws_close(c, WS_TOO_BIG);
            break;
        }
        if (n - off - header_len < len) break; /* not all here yet */
        char *payload = p + off + header_len;
        unmask(payload, len, h + header_len - 4);
        off += header_len + len;

        if (opcode >= 0x8) { /* control frames: not fragmented, at most 125 bytes */
            if (!fin || len > 125) {
                ws_close(c, WS_PROTOCOL_ERROR);
                break;
            }
            if (opcode == OP_PING) {
                send_frame(c, OP_PONG, payload, len);
            } else if (opcode == OP_CLOSE) {
                if (len == 1) { /* a close payload is empty or starts with a 2-byte code */
                    ws_close(c, WS_PROTOCOL_ERROR);
                } else {
                    send_frame(c, OP_CLOSE, payload, len < 2 ? 0 : 2); /* echo the code */
                    start_closing(c);
                }
            } else if (opcode != OP_PONG) {
                ws_close(c, WS_PROTOCOL_ERROR);
            }
        } else if (opcode == OP_CONT) {
            if (!c->in_message) {
                ws_close(c, WS_PROTOCOL_ERROR);
                break;
            }
            c->in_message = !fin;
            stomp_input(c, payload, len);
        } else if (opcode == OP_TEXT || opcode == OP_BINARY) {
            if (c->in_message) {
                ws_close(c, WS_PROTOCOL_ERROR);
                break;
            }
            c->in_message = !fin;
            stomp_input(c, payload, len);
        } else {
            ws_close(c, WS_PROTOCOL_ERROR);
        }
    }
    return off;
}

/* ------------------------------------------------------------------------------ HTTP upgrade */

static void base64(const unsigned char *in, size_t n, char *out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Case-insensitive search of `needle` in [p, p + n). */
static bool contains_nocase(const char *p, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp(p + i, needle, m) == 0) return true;
    return false;
}

static void http_fail(conn *c, const char *response) {
    send_raw(c, response, strlen(response));
    start_closing(c);
}

/* Answers the upgrade request once its header block is complete (in c->in), and consumes it. */
static void http_input(conn *c) {
    const char *req = c->in.data;
    const char *end = memmem(req, c->in.len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in.len > MAX_HTTP_REQUEST)
            http_fail(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    end += 2; /* keep the last header line's CRLF, drop the blank line */
    const char *key = NULL;
    size_t key_len = 0;
    bool upgrade = false, version13 = false, stomp12 = false;
    const char *line_end = req, *q = next_line(req, end, &line_end);
    bool is_get = line_end - req > 4 && memcmp(req, "GET ", 4) == 0;
    while (q && q < end) {
        const char *line = q;
        q = next_line(line, end, &line_end);
        const char *colon = memchr(line, ':', (size_t)(line_end - line));
        if (!colon) continue;
        const char *v = colon + 1, *ve = line_end;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t name_len = (size_t)(colon - line), vlen = (size_t)(ve - v);
#define NAME_IS(s) (name_len == sizeof(s) - 1 && strncasecmp(line, s, name_len) == 0)
        if (NAME_IS("Upgrade")) upgrade = contains_nocase(v, vlen, "websocket");
        else if (NAME_IS("Sec-WebSocket-Key")) key = v, key_len = vlen;
        else if (NAME_IS("Sec-WebSocket-Version")) version13 = vlen == 2 && memcmp(v, "13", 2) == 0;
        else if (NAME_IS("Sec-WebSocket-Protocol")) stomp12 = stomp12 || contains_nocase(v, vlen, "v12.stomp");
        /* Sec-WebSocket-Extensions (permessage-deflate offers) are ignored: we answer with none. */
#undef NAME_IS
    }
    if (!is_get || !upgrade || !key || key_len == 0 || key_len > 64) {
        http_fail(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    if (!version13) {
        http_fail(c, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
        return;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (RFC 6455 section 4.2.2). */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char input[64 + sizeof guid], digest[SHA_DIGEST_LENGTH];
    memcpy(input, key, key_len);
    memcpy(input + key_len, guid, sizeof guid - 1);
    SHA1(input, key_len + sizeof guid - 1, digest);
    char accept[32];
    base64(digest, sizeof digest, accept);

    g_tmp.len = 0;
    buf_lit(&g_tmp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: ");
    buf_append(&g_tmp, accept, strlen(accept));
    if (stomp12) buf_lit(&g_tmp, "\r\nSec-WebSocket-Protocol: v12.stomp");
    buf_lit(&g_tmp, "\r\n\r\n");
    send_raw(c, g_tmp.data, g_tmp.len);
    c->state = ST_OPEN;
    buf_consume(&c->in, (size_t)(end + 2 - req));
}

/* ----------------------------------------------------------------------------------- events */

static void on_readable(conn *c) {
    if (c->state == ST_CLOSING || c->state == ST_DRAINING) {
        /* Nothing more is processed; wait for the peer's end of stream. */
        ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_kill(c);
        return;
    }
    /* Common case: no partial input, read into the shared buffer and parse there. Otherwise read behind
     * the partial bytes in the connection's own buffer. */
    bool buffered = c->state == ST_HTTP || c->in.len > 0;
    char *dst = buffered ? buf_reserve(&c->in, READ_CHUNK, READ_CHUNK) : g_rbuf;
    size_t room = buffered ? c->in.cap - c->in.len : sizeof g_rbuf;
    ssize_t r = read(c->fd, dst, room);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_kill(c);
        return;
    }
    if (!buffered) {
        size_t used = ws_input(c, g_rbuf, (size_t)r);
        if (used < (size_t)r && c->state == ST_OPEN) buf_append(&c->in, g_rbuf + used, (size_t)r - used);
        return;
    }
    c->in.len += (size_t)r;
    if (c->state == ST_HTTP) http_input(c);
    if (c->state == ST_OPEN && c->in.len > 0) buf_consume(&c->in, ws_input(c, c->in.data, c->in.len));
}

/* After the input of a read is handled: a connection that stopped reading frames needs no input buffers.
 * (Not freed earlier: the parsers may still be walking them when a frame makes the connection close.) */
static void drop_input_if_closed(conn *c) {
    if (c->state != ST_OPEN && c->state != ST_HTTP) {
        buf_free(&c->in);
        buf_free(&c->stomp);
    }
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(g_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of spinning on the listener. */
                epoll_ctl(g_epoll, EPOLL_CTL_DEL, g_listen, NULL);
                g_accept_resume_ms = now_ms() + 100;
                fprintf(stderr, "minibroker: accept: %s (pausing accepts)\n", strerror(errno));
            }
            return; /* EAGAIN: all accepted; other errors (ECONNABORTED...): try again on the next event */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) oom();
        c->fd = fd;
        c->state = ST_HTTP;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        if ((size_t)fd >= g_by_fd_cap) {
            size_t cap = g_by_fd_cap ? g_by_fd_cap : 1024;
            while ((size_t)fd >= cap) cap *= 2;
            g_by_fd = xrealloc(g_by_fd, cap * sizeof *g_by_fd);
            memset(g_by_fd + g_by_fd_cap, 0, (cap - g_by_fd_cap) * sizeof *g_by_fd);
            g_by_fd_cap = cap;
        }
        g_by_fd[fd] = c;
        g_nconns++;
        g_accepted++;
    }
}

/* Closing connections past their grace period are cut; a paused listener is resumed. */
static void run_timers(void) {
    int64_t now = now_ms();
    for (conn *c = g_closing_head; c && c->deadline_ms <= now; c = c->closing_next) conn_kill(c);
    if (g_accept_resume_ms && now >= g_accept_resume_ms) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(g_epoll, EPOLL_CTL_ADD, g_listen, &ev);
        g_accept_resume_ms = 0;
    }
}

static void on_signal(int sig) {
    if (sig == SIGUSR1) g_dump = 1;
    else g_stop = 1;
}

static void dump_counters(void) {
    fprintf(stderr,
            "minibroker: connections=%llu (accepted %llu) topics=%zu subscriptions=%llu sends=%llu "
            "deliveries=%llu\n",
            (unsigned long long)g_nconns, (unsigned long long)g_accepted, g_ntopics,
            (unsigned long long)g_nsubs, (unsigned long long)g_sends, (unsigned long long)g_deliveries);
}

static int listen_on(const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "minibroker: bad IPv4 address %s\n", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "minibroker: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void usage(FILE *to) {
    fprintf(to, "usage: minibroker [--port N (default %d)] [--host IPv4 (default 127.0.0.1)]\n"
                "STOMP 1.2 over WebSocket on any path; a ceiling reference, see README.md.\n",
            DEFAULT_PORT);
}

int main(int argc, char **argv) {
    int port = DEFAULT_PORT;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        usage(stderr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer returns EPIPE instead */
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    if ((g_listen = listen_on(host, port)) < 0) return 1;
    g_epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL marks the listener */
    if (g_epoll < 0 || epoll_ctl(g_epoll, EPOLL_CTL_ADD, g_listen, &lev) < 0) {
        perror("minibroker: epoll");
        return 1;
    }
    fprintf(stderr, "minibroker: listening on ws://%s:%d/ (any path)\n", host, port);

    static struct epoll_event events[MAX_EVENTS];
    while (!g_stop) {
        int timeout = (g_closing_head || g_accept_resume_ms) ? 100 : -1;
        int n = epoll_wait(g_epoll, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno != EINTR) {
                perror("minibroker: epoll_wait");
                break;
            }
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (!c) {
                on_accept();
                continue;
            }
            if (c->state == ST_DEAD) continue;
            if (events[i].events & EPOLLOUT) {
                c->blocked = false; /* room again: write at the end of this iteration */
                mark_dirty(c);
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_readable(c);
                drop_input_if_closed(c);
            }
        }
        /* One write per dirty connection: everything queued during this iteration goes out together. */
        for (size_t i = 0; i < g_ndirty; i++) {
            conn *c = g_dirty[i];
            c->dirty = false;
            if (c->state != ST_DEAD && !c->blocked) flush_conn(c);
        }
        g_ndirty = 0;
        if (g_closing_head || g_accept_resume_ms) run_timers();
        for (size_t i = 0; i < g_ndead; i++) conn_destroy(g_dead[i]);
        g_ndead = 0;
        if (g_dump) {
            g_dump = 0;
            dump_counters();
        }
    }

    /* Orderly exit: free everything, so a leak checker sees only real leaks. */
    for (size_t fd = 0; fd < g_by_fd_cap; fd++)
        if (g_by_fd[fd]) conn_destroy(g_by_fd[fd]);
    dump_counters();
    free(g_by_fd);
    free(g_dirty);
    free(g_dead);
    free(g_buckets);
    buf_free(&g_msg);
    buf_free(&g_tmp);
    close(g_listen);
    close(g_epoll);
    return 0;
}
