/*
 * stomp.c: minibroker's STOMP side: the frame parser (a byte stream fed by websocket.c), the commands and
 * their replies, the topic table with its subscriptions, and the fan-out of a SEND to every subscriber.
 * See minibroker.c for the design.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "minibroker.h"

static uint64_t g_next_message_id = 1; /* only SEND uses it; the other global state is in minibroker.c */

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
void topic_remove(sub *s) {
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
const char *next_line(const char *p, const char *end, const char **line_end) {
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
void stomp_input(conn *c, const char *p, size_t n) {
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
