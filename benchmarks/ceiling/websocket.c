/*
 * websocket.c: minibroker's WebSocket side (RFC 6455): the HTTP upgrade handshake, the server's frames and
 * the client's frames, unmasked where they lie, their payload handed to the STOMP parser (stomp.c).
 * See minibroker.c for the design.
 */
#define _GNU_SOURCE
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "minibroker.h"

/* --------------------------------------------------------------------------------- WebSocket output */

/* A server frame header (FIN set, unmasked) for a payload of `len` bytes; returns its size (2, 4 or 10). */
size_t ws_header(char *dst, int opcode, size_t len) {
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

void send_frame(conn *c, int opcode, const char *payload, size_t len) {
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
void ws_close(conn *c, int code) {
    char payload[2] = {(char)(code >> 8), (char)(code & 0xff)};
    send_frame(c, OP_CLOSE, payload, 2);
    start_closing(c);
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
size_t ws_input(conn *c, char *p, size_t n) {
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
void http_input(conn *c) {
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
