/*
 * minibroker.c: a minimal, fast STOMP 1.2 over WebSocket broker, written as a *ceiling reference*.
 *
 * It does the least work a broker must do per delivery (parse the SEND once, build the MESSAGE once, copy
 * it into each subscriber's output buffer, one write per connection per event-loop iteration) so that the
 * same load generator run against it and against Starling shows how close Starling gets to what this
 * machine can do. It is not a product: no queues, no acks, no persistence, no heart-beats, no deflate,
 * no wildcards, no authentication. See README.md next to this file.
 *
 * Build:  cc -O2 -o minibroker minibroker.c websocket.c stomp.c -lcrypto    (OpenSSL: SHA-1, handshake)
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
 *
 * This file has the options, the global state, the connection lifecycle, output flushing and the event
 * loop; websocket.c the HTTP upgrade and the WebSocket frames; stomp.c the STOMP frames, topics and
 * fan-out; minibroker.h what they share.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "minibroker.h"

/* --------------------------------------------------------------------------------- global state */

/* The ones without `static` are also used in websocket.c and stomp.c (declared in minibroker.h). */
static int g_epoll = -1;
static int g_listen = -1;
static char g_rbuf[READ_CHUNK];        /* reads land here when the connection has no partial input */
buf g_msg;                             /* the shared part of the MESSAGE being fanned out */
buf g_tmp;                             /* small STOMP replies being built */
static conn **g_by_fd;                 /* fd -> connection, for shutdown and counters */
static size_t g_by_fd_cap;
static conn **g_dirty;                 /* connections with output to write this iteration */
static size_t g_ndirty, g_dirty_cap;
static conn **g_dead;                  /* connections to destroy at the end of this iteration */
static size_t g_ndead, g_dead_cap;
static conn *g_closing_head, *g_closing_tail;
topic **g_buckets;
size_t g_nbuckets, g_ntopics;
static int64_t g_accept_resume_ms;     /* > 0: accepting is paused (out of file descriptors) until then */
static volatile sig_atomic_t g_stop, g_dump;

/* Counters for SIGUSR1. */
static uint64_t g_nconns, g_accepted;
uint64_t g_nsubs, g_sends, g_deliveries;

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
void conn_kill(conn *c) {
    if (c->state == ST_DEAD) return;
    c->state = ST_DEAD;
    push_ptr(&g_dead, &g_ndead, &g_dead_cap, c);
}

void mark_dirty(conn *c) {
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
void start_closing(conn *c) {
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
char *out_reserve(conn *c, size_t n) {
    buf *b = &c->out;
    if (b->cap - b->len < n && c->out_off > 0) {
        memmove(b->data, b->data + c->out_off, b->len - c->out_off);
        b->len -= c->out_off;
        c->out_off = 0;
    }
    return buf_reserve(b, n, OUT_INITIAL);
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
