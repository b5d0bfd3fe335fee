/*
 * minibroker.h: what the parts of minibroker share: the limits, byte buffers, the data model, the global
 * state more than one file uses and the functions one file calls in another. See minibroker.c.
 *
 *   minibroker.c  options, global state, connection lifecycle, output flushing, the event loop
 *   websocket.c   the HTTP upgrade handshake, WebSocket frames in (unmasking, decoding) and out
 *   stomp.c       STOMP frame parsing, commands and replies, topics, subscriptions and fan-out
 */
#ifndef MINIBROKER_H
#define MINIBROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static inline void oom(void) {
    fputs("minibroker: out of memory\n", stderr);
    exit(1);
}

static inline void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) oom();
    return q;
}

/* Makes room for `extra` more bytes and returns where they go (the caller advances `len`). */
static inline char *buf_reserve(buf *b, size_t extra, size_t initial) {
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : initial;
        while (cap - b->len < extra) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

static inline void buf_append(buf *b, const void *p, size_t n) {
    memcpy(buf_reserve(b, n, 256), p, n);
    b->len += n;
}

#define buf_lit(b, s) buf_append((b), (s), sizeof(s) - 1)

static inline void buf_free(buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Drops the first `n` bytes; an emptied buffer is freed (connections keep no input memory when idle). */
static inline void buf_consume(buf *b, size_t n) {
    if (n >= b->len) {
        buf_free(b);
    } else if (n > 0) {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
}

/* Writes `v` in decimal, returns the number of digits. */
static inline size_t fmt_u64(char *dst, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

static inline void buf_u64(buf *b, uint64_t v) {
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

/* ------------------------------------------------------------------------ shared global state */

/* Defined (and described) with the rest of the global state in minibroker.c. */
extern buf g_msg, g_tmp;
extern topic **g_buckets;
extern size_t g_nbuckets, g_ntopics;
extern uint64_t g_nsubs, g_sends, g_deliveries;

/* ------------------------------------------------------------------------ across the files */

/* minibroker.c */
void conn_kill(conn *c);
void mark_dirty(conn *c);
void start_closing(conn *c);
char *out_reserve(conn *c, size_t n);

/* websocket.c */
size_t ws_header(char *dst, int opcode, size_t len);
void send_frame(conn *c, int opcode, const char *payload, size_t len);
void ws_close(conn *c, int code);
size_t ws_input(conn *c, char *p, size_t n);
void http_input(conn *c);

/* stomp.c */
void topic_remove(sub *s);
const char *next_line(const char *p, const char *end, const char **line_end);
void stomp_input(conn *c, const char *p, size_t n);

#endif
