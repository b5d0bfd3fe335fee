"""Slow-consumer policies and rate caps (issue 8, second part; docs/slow-consumers.md).

A `[[policy]]` table for `/topic/` patterns says what happens to a subscriber that cannot keep up
(`slow-consumer = "disconnect" | "conflate" | "drop-oldest"`, with `max-pending-messages` for drop-oldest) and caps
how often it gets updates (`max-rate`, and the SUBSCRIBE header `x-max-rate`; the lower of the two applies). Queues
simply stop dispatching to a slow consumer. Nothing a slow subscriber does slows the publisher or the other
subscribers.

Covered here: conflate (per destination and x-key, per subscription, O(keys) server memory, the last value of every
key arrives, order of keys), drop-oldest (x-dropped accounts exactly for every gap), disconnect (explicit and by
default, lossless within the budget, ERROR "slow consumer"), the max-pending-bytes cap in every mode, the same over
WebSocket (with and without permessage-deflate, close 1008), UNSUBSCRIBE discarding what was held, x-max-rate and
policy max-rate (caps, the lower wins, the newest value arrives, bad and tiny values, where the header is allowed),
config errors, queues, and last-value snapshots with conflation and rate caps (also for a client already slow).

The tests use real sockets: a "stalled" subscriber is a plain TCP (or WebSocket) STOMP client with a small receive
buffer that stops reading after its SUBSCRIBE's RECEIPT, so the server's socket buffers for it fill up; the reading
clients read on a background thread (``Reader``) and the bulk publisher stays at most two messages ahead of one of
them, so they are never the slow ones. Nothing sleeps to wait for a condition: every wait has a deadline; the only
sleeps pace the rate-cap publishers.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import zlib
from pathlib import Path

import pytest

from e2e_helpers import (
    Closed,
    Frame,
    RawStompBase,
    RawTcpStomp,
    ServerStartError,
    StarlingServer,
    uid,
    ws_frame,
    ws_handshake_request,
)

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

BIG_BODY = 40_000  # bytes per message in the bulk tests: 500 of them are 20 MB, far beyond the socket buffers
BIG_COUNT = 500
BULK_COUNT = 300  # 12 MB: enough to pass max-pending-bytes (4 MiB) beyond the socket buffers (about 3 MB)


def config_args(tmp_path: Path, text: str, name: str = "policies.toml") -> list[str]:
    """Write a TOML config into tmp_path; return the ``--config`` arguments for it."""
    path = tmp_path / name
    path.write_text(text)
    return ["--config", str(path)]


def rss_bytes(srv: StarlingServer) -> int:
    """The server process's resident set size (VmRSS of /proc/<pid>/status), in bytes."""
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line in /proc/<pid>/status")


class RssSampler:
    """Samples the server's RSS every 20 ms on a thread until stopped; ``peak`` is the highest sample."""

    def __init__(self, srv: StarlingServer):
        self.srv = srv
        self.base = rss_bytes(srv)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_bytes(self.srv))
            except (OSError, AssertionError):
                return

    def stop(self) -> int:
        """Stop sampling; return the growth (peak - base) in bytes."""
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss_bytes(self.srv))
        return self.peak - self.base


class StalledTcpStomp(RawTcpStomp):
    """A raw TCP STOMP client whose SO_RCVBUF is set small *before* connecting (so the TCP window stays small).
    The test simply does not read it for a while."""

    def __init__(self, port: int, rcvbuf: int = 4096, timeout: float = 5.0):
        RawStompBase.__init__(self)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))


class WsStomp(RawStompBase):
    """STOMP over a hand-made WebSocket client on a plain socket (optionally with a small SO_RCVBUF set before
    connecting, for a stalled WebSocket subscriber; optionally offering permessage-deflate, whose compressed
    messages it inflates). ``close_code`` is the code of the server's close frame, if one came."""

    def __init__(self, port: int, rcvbuf: int | None = None, deflate: bool = False, path: str = "/ws",
                 timeout: float = 5.0):
        super().__init__()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        sock.sendall(ws_handshake_request(path, protocols="v12.stomp", extra=extra))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed during the WebSocket handshake: {head!r}"
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        assert head.split(b" ", 2)[1] == b"101", head
        extensions = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"sec-websocket-extensions:")]
        self.deflate = any("permessage-deflate" in e for e in extensions)
        assert self.deflate == deflate, f"permessage-deflate offered: {deflate}, negotiated: {extensions}"
        self.no_context_takeover = any("server_no_context_takeover" in e for e in extensions)
        self._inflater = zlib.decompressobj(-15)
        self.sock = sock
        self.buf = bytearray(rest)
        self._message: bytearray | None = None
        self._compressed = False
        self.close_code: int | None = None

    def _frame(self, deadline: float):
        """The next WebSocket frame as (fin, rsv1, opcode, payload); None when the TCP connection closed; raises
        TimeoutError at the deadline (keeping what was read)."""
        def fill(n: int) -> bool:
            while len(self.buf) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self.sock.settimeout(remaining)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    raise TimeoutError() from None
                except OSError:
                    return False
                if not chunk:
                    return False
                self.buf += chunk
            return True

        if not fill(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if not fill(4):
                return None
            n, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            if not fill(10):
                return None
            n, off = int.from_bytes(self.buf[2:10], "big"), 10
        assert not b1 & 0x80, "the server masked a frame"
        if not fill(off + n):
            return None
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload

    def _read(self, timeout: float):
        deadline = time.monotonic() + max(timeout, 0.001)
        while True:
            try:
                frame = self._frame(deadline)
            except TimeoutError:
                return None
            if frame is None:
                return b""
            fin, rsv1, op, payload = frame
            if op == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return b""
            if op == 0x9:
                self.sock.sendall(ws_frame(0xA, payload))
                continue
            if op == 0xA:
                continue
            if op in (0x1, 0x2):
                self._message, self._compressed = bytearray(payload), rsv1
            else:
                assert self._message is not None, "a continuation frame without a message"
                self._message += payload
            if not fin:
                continue
            data, self._message = bytes(self._message), None
            if self._compressed:
                inflater = zlib.decompressobj(-15) if self.no_context_takeover else self._inflater
                data = inflater.decompress(data + b"\x00\x00\xff\xff")
            return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(ws_frame(0x1, data))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Reader:
    """Reads every frame of a raw client on a background thread, keeping (arrival time, frame); notes when the peer
    closes. Start it only when the test wants the client to read."""

    def __init__(self, client: RawStompBase):
        self.client = client
        self.cond = threading.Condition()
        self.frames: list[tuple[float, Frame]] = []
        self.message_count = 0
        self.closed = False
        self.failure: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                frame = self.client.recv_frame(0.2)
            except TimeoutError:
                continue
            except Closed:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            except BaseException as e:  # noqa: BLE001 - reported by wait_for
                with self.cond:
                    self.failure = e
                    self.closed = True
                    self.cond.notify_all()
                return
            with self.cond:
                self.frames.append((time.monotonic(), frame))
                if frame.command == "MESSAGE":
                    self.message_count += 1
                self.cond.notify_all()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(2)

    def messages(self) -> list[Frame]:
        with self.cond:
            return [f for _, f in self.frames if f.command == "MESSAGE"]

    def timed_messages(self) -> list[tuple[float, Frame]]:
        with self.cond:
            return [(t, f) for t, f in self.frames if f.command == "MESSAGE"]

    def commands(self) -> list[str]:
        with self.cond:
            return [f.command for _, f in self.frames]

    def errors(self) -> list[Frame]:
        with self.cond:
            return [f for _, f in self.frames if f.command == "ERROR"]

    def wait_for(self, pred, timeout: float, what: str, stop_on_close: bool = True) -> None:
        """Wait until ``pred()`` holds (evaluated under the lock, so it may read ``self.frames``)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop_on_close and self.closed):
                    frames = [f for _, f in self.frames]
                    msgs = sum(1 for f in frames if f.command == "MESSAGE")
                    others = [f for f in frames if f.command != "MESSAGE"][:5]
                    state = "connection closed" if self.closed else f"timed out after {timeout}s"
                    raise AssertionError(f"{state} waiting for {what}: {msgs} MESSAGEs, other frames {others!r}, "
                                         f"reader failure {self.failure!r}")
                self.cond.wait(min(remaining, 0.5))

    def wait_receipt(self, receipt: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda: any(f.command == "RECEIPT" and f.headers.get("receipt-id") == receipt
                                  for _, f in self.frames), timeout, f"RECEIPT {receipt!r}")

    def roundtrip(self, timeout: float = 10.0) -> None:
        """A SEND with a receipt on this (reading) connection: proves it is still open and served."""
        receipt = "alive-" + uid()
        self.client.send_frame("SEND", [("destination", f"/topic/{uid()}"), ("receipt", receipt)], b"ping")
        self.wait_receipt(receipt, timeout)


def connect(srv: StarlingServer, client_cls=RawTcpStomp, **kw) -> RawStompBase:
    client = client_cls(srv.http_port if client_cls is WsStomp else srv.stomp_port, **kw)
    frame = client.connect("1.2")
    assert frame.command == "CONNECTED", frame
    return client


def subscribe_now(client: RawStompBase, destination: str, sub_id: str = "s", headers=None) -> list[Frame]:
    """SUBSCRIBE with a receipt on a client no Reader reads; returns the frames that came before the RECEIPT."""
    receipt = "sub-" + uid()
    client.send_frame("SUBSCRIBE", [("id", sub_id), ("destination", destination), ("receipt", receipt),
                                    *(headers or {}).items()])
    before = []
    while True:
        frame = client.recv_frame(10)
        if frame.command == "RECEIPT" and frame.headers.get("receipt-id") == receipt:
            return before
        assert frame.command != "ERROR", f"SUBSCRIBE {destination} {headers} refused: {frame!r}"
        before.append(frame)


def subscribe_reading(reader: Reader, destination: str, sub_id: str = "s", headers=None) -> None:
    """SUBSCRIBE with a receipt on a client a Reader reads; waits for the RECEIPT."""
    receipt = "sub-" + uid()
    reader.client.send_frame("SUBSCRIBE", [("id", sub_id), ("destination", destination), ("receipt", receipt),
                                           *(headers or {}).items()])
    reader.wait_for(lambda: any(f.command in ("RECEIPT", "ERROR") and
                                (f.command == "ERROR" or f.headers.get("receipt-id") == receipt)
                                for _, f in reader.frames), 10, f"RECEIPT of SUBSCRIBE {destination}")
    assert not reader.errors(), f"SUBSCRIBE {destination} {headers} refused: {reader.errors()!r}"


def publisher(srv: StarlingServer) -> RawTcpStomp:
    # A long send timeout: the server may take a moment to read 20 MB, and a timeout here would only hide that.
    return connect(srv, timeout=60.0)


def finish_publishing(pub: RawTcpStomp, timeout: float = 60.0) -> None:
    """A last frame with a receipt (a SEND to a topic nobody reads): once it arrives, the server has handled every
    earlier SEND of this publisher."""
    receipt = "done-" + uid()
    pub.send_frame("SEND", [("destination", f"/topic/{uid()}"), ("receipt", receipt)], b"end")
    frame = pub.recv_until("RECEIPT", timeout)
    assert frame.command == "RECEIPT" and frame.headers.get("receipt-id") == receipt, frame


def seq(frame: Frame) -> int:
    return int(frame.headers["x-seq"])


def per_key(frames: list[Frame]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in frames:
        out.setdefault(f.headers.get("x-key", ""), []).append(seq(f))
    return out


def per_route(frames: list[Frame]) -> dict[tuple[str, str | None], list[int]]:
    """x-seq values per (destination, x-key or None), in arrival order."""
    out: dict[tuple[str, str | None], list[int]] = {}
    for f in frames:
        out.setdefault((f.headers["destination"], f.headers.get("x-key")), []).append(seq(f))
    return out


def check_first_pending_order(arrived: list[int], routes: list, expected: list, label: str) -> None:
    """Conflated values go out "in the order their keys first became pending". In the usual shape (an in-order
    prefix, what the socket buffers held, then exactly one value per key) the keys of that tail must come in the
    order of the first messages not in the prefix. (Other shapes, after a partial drain, are not checked.)"""
    mine = [i for i in range(BIG_COUNT) if routes[i % len(routes)] in expected]
    k = 0
    while k < len(arrived) and k < len(mine) and arrived[k] == mine[k]:
        k += 1
    tail = [routes[i % len(routes)] for i in arrived[k:]]
    if len(tail) != len(expected) or sorted(tail, key=str) != sorted(expected, key=str):
        return
    want = [routes[i % len(routes)] for i in mine[k:k + len(expected)]]
    assert tail == want, f"{label}: conflated keys written in order {tail}, but they became pending in order {want}"


def publish_bulk(pub: RawTcpStomp, destination: str | None, count: int, body_size: int, keys: list[str] | None,
                 follow: Reader | None = None, window: int = 2,
                 routes: list[tuple[str, str | None]] | None = None) -> None:
    """``count`` SENDs of ``body_size`` bytes with x-seq 0..count-1, to ``destination`` with x-key cycling over
    ``keys`` (or cycling over ``routes``: (destination, x-key or None)). With ``follow`` (a subscriber reading all of
    them), the publisher stays at most ``window`` messages ahead of it, so that reader (Python, slower than the
    server) never becomes a slow consumer itself; the stalled ones fall behind all the same."""
    # Random base64 text: it stays big under permessage-deflate (about 3/4 of its size) and is valid UTF-8.
    body = base64.b64encode(os.urandom(body_size))[:body_size]
    if routes is None:
        routes = [(destination, k) for k in keys] if keys else [(destination, None)]
    for i in range(count):
        if follow is not None and i >= window:
            follow.wait_for(lambda: follow.message_count > i - window, 30,
                            f"the reading subscriber's message {i - window} (it must keep up)")
        dest, key = routes[i % len(routes)]
        headers = [("destination", dest), ("x-seq", str(i))]
        if key is not None:
            headers.append(("x-key", key))
        pub.send_frame("SEND", headers, body)


def check_back_to_normal(pub: RawTcpStomp, reader: Reader, destination: str, sub_id: str = "s", n: int = 20) -> None:
    """Once a formerly stalled subscriber has read everything, it is not slow any more: ``n`` more small messages
    (x-seq from 1000000, no x-key) all arrive, in order, without x-dropped."""
    first = 1_000_000
    for i in range(n):
        pub.send_frame("SEND", [("destination", destination), ("x-seq", str(first + i))], b"after")
    reader.wait_for(lambda: sum(1 for _, f in reader.frames if f.command == "MESSAGE" and seq(f) >= first
                                and f.headers.get("subscription") == sub_id) >= n, 10,
                    f"{n} messages published after the stalled subscriber caught up")
    after = [f for f in reader.messages() if seq(f) >= first and f.headers.get("subscription") == sub_id]
    assert [seq(f) for f in after] == list(range(first, first + n)), [seq(f) for f in after]
    assert all("x-dropped" not in f.headers for f in after), [f.headers for f in after]


def close_all(*clients) -> None:
    for c in clients:
        if isinstance(c, Reader):
            c.stop()
            c.client.close()
        elif c is not None:
            c.close()


# --------------------------------------------------------------------------------------------------
# 1. conflate
# --------------------------------------------------------------------------------------------------


def test_conflate_keeps_the_latest_value_per_key_for_a_stalled_subscriber(own_server, tmp_path):
    """On a `slow-consumer = "conflate"` topic tree, a TCP subscriber (wildcard, plus an exact subscription on the
    same connection) stops reading while 20 MB are published: to 6 x-keys of one topic, to a topic without x-key and
    to a topic reusing one of the x-keys. It stays connected and costs the server O(keys) memory (RSS grows far less
    than the bytes published); a reading subscriber with the same subscription gets every message in order. When the
    stalled one reads again each subscription gets, after what the socket buffers already held, the last message of
    every key (x-keys of one topic kept apart, the same x-key in two topics kept apart), each key's x-seq increasing,
    the keys in the order they became pending; then it is back to normal."""
    srv = own_server(config_args(tmp_path, '[[policy]]\nmatch = "/topic/cfl.#"\nslow-consumer = "conflate"\n'))
    base = f"/topic/cfl.{uid()}"
    # 6 x-keys in one topic; a topic without x-key; another topic using x-key k0 too (kept apart from the first's)
    routes = [(f"{base}.keyed", f"k{i}") for i in range(6)] + [(f"{base}.plain", None), (f"{base}.other", "k0")]
    last_of = {r: max(i for i in range(BIG_COUNT) if i % len(routes) == n) for n, r in enumerate(routes)}

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, f"{base}.*", "s")
    subscribe_now(stalled, f"{base}.keyed", "x")  # a second subscription, conflated on its own
    reader = Reader(connect(srv))
    subscribe_reading(reader, f"{base}.*")
    pub = publisher(srv)
    stalled_reader = None
    try:
        sampler = RssSampler(srv)
        publish_bulk(pub, None, BIG_COUNT, BIG_BODY, None, follow=reader, routes=routes)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= BIG_COUNT, 30, f"the reading subscriber's {BIG_COUNT} messages")
        growth = sampler.stop()
        assert [seq(f) for f in reader.messages()] == list(range(BIG_COUNT)), "the reader missed or reordered"
        published = BIG_COUNT * BIG_BODY
        # Conflated state is 8 keys x 40 KB; allow generously for allocator slack, never the 20 MB published (nor
        # the 4 MiB the disconnect policy would hold before disconnecting).
        assert growth < published // 5, f"server RSS grew by {growth} bytes while {published} were published"

        stalled_reader = Reader(stalled)

        def of(sub_id):
            return [f for _, f in stalled_reader.frames
                    if f.command == "MESSAGE" and f.headers.get("subscription") == sub_id]

        keyed = [r for r in routes if r[0].endswith(".keyed")]
        stalled_reader.wait_for(
            lambda: all(last_of[r] in per_route(of("s")).get(r, []) for r in routes)
            and all(last_of[r] in per_route(of("x")).get(r, []) for r in keyed),
            30, "the last message of every key, for both subscriptions, at the stalled subscriber")
        assert not stalled_reader.errors(), stalled_reader.errors()
        for sub_id, expected in (("s", routes), ("x", keyed)):
            got = of(sub_id)
            by_route = per_route(got)
            assert sorted(by_route, key=str) == sorted(expected, key=str), (sub_id, sorted(by_route, key=str))
            for r, seqs in by_route.items():
                assert seqs == sorted(set(seqs)), f"subscription {sub_id} {r}: x-seq not strictly increasing: {seqs}"
                assert all(s % len(routes) == routes.index(r) for s in seqs), \
                    f"subscription {sub_id} {r} got another key's message: {seqs}"
                assert seqs[-1] == last_of[r]
            assert len(got) < sum(1 for i in range(BIG_COUNT) if routes[i % len(routes)] in expected), \
                f"subscription {sub_id} got every message: it never was slow, or nothing was conflated"
            check_first_pending_order([seq(f) for f in got], routes, expected, sub_id)
        # Still connected and served, and no longer slow.
        stalled_reader.roundtrip()
        check_back_to_normal(pub, stalled_reader, f"{base}.plain", "s")
    finally:
        close_all(pub, reader, stalled_reader or stalled)


# --------------------------------------------------------------------------------------------------
# 2. drop-oldest
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["one-topic", "wildcard-two-topics"])
def test_drop_oldest_holds_the_newest_and_counts_what_it_dropped(own_server, tmp_path, shape):
    """On a `slow-consumer = "drop-oldest"`, `max-pending-messages = 50` topic (one topic, or a wildcard subscription
    over two topics: the limit and the count are per subscription), a stalled subscriber is not disconnected; when it
    reads again, every gap in its x-seq is announced by `x-dropped:<gap>` on the message right after the gap (and
    there is no x-dropped without a gap), some were dropped, at most 50 messages follow the first drop, and the last
    message arrives; then it is back to normal. A reading subscriber gets everything in order."""
    srv = own_server(config_args(
        tmp_path, '[[policy]]\nmatch = "/topic/dro.#"\nslow-consumer = "drop-oldest"\nmax-pending-messages = 50\n'))
    base = f"/topic/dro.{uid()}"
    if shape == "one-topic":
        topic, routes = base, [(base, None)]
    else:
        topic, routes = f"{base}.*", [(f"{base}.a", None), (f"{base}.b", "k")]
    count, body = 1000, 20_000  # 20 MB; 50 held messages are 1 MB, well under max-pending-bytes (4 MiB)

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, None, count, body, None, follow=reader, routes=routes)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= count, 30, f"the reading subscriber's {count} messages")
        assert [seq(f) for f in reader.messages()] == list(range(count))
        assert all("x-dropped" not in f.headers for f in reader.messages()), "the reader was never slow"

        stalled_reader = Reader(stalled)
        stalled_reader.wait_for(lambda: any(f.command == "MESSAGE" and seq(f) == count - 1
                                            for _, f in stalled_reader.frames),
                                30, "the last message at the stalled subscriber")
        assert not stalled_reader.errors(), stalled_reader.errors()
        got = stalled_reader.messages()
        previous = -1
        total_dropped = 0
        first_drop = None
        for index, frame in enumerate(got):
            gap = seq(frame) - previous - 1
            assert gap >= 0, f"x-seq went backwards or repeated: {previous} then {seq(frame)}"
            dropped = frame.headers.get("x-dropped")
            if gap:
                assert dropped is not None, f"{gap} messages missing before x-seq {seq(frame)} but no x-dropped"
            if dropped is not None:
                assert int(dropped) == gap, f"x-dropped:{dropped} on x-seq {seq(frame)}, but the gap is {gap}"
                assert gap > 0
                if first_drop is None:
                    first_drop = index
            total_dropped += gap
            previous = seq(frame)
        assert first_drop is not None, f"nothing was dropped: the stalled subscriber got all {len(got)}"
        assert len(got) + total_dropped == count
        assert 1 <= len(got) - first_drop <= 50, \
            f"{len(got) - first_drop} messages after the first drop, more than max-pending-messages (50)"
        stalled_reader.roundtrip()
        check_back_to_normal(pub, stalled_reader, routes[0][0])
    finally:
        close_all(pub, reader, stalled_reader or stalled)


# --------------------------------------------------------------------------------------------------
# 3. disconnect (explicit and default)
# --------------------------------------------------------------------------------------------------

DISCONNECT_CONFIGS = {
    # slow-consumer = "disconnect" said outright
    "explicit": '[[policy]]\nmatch = "/topic/dis.#"\nslow-consumer = "disconnect"\n',
    # the topic's policy says nothing about slow consumers; another pattern conflates
    "default": '[[policy]]\nmatch = "/topic/other.#"\nslow-consumer = "conflate"\n\n'
               '[[policy]]\nmatch = "/topic/dis.#"\nlast-value = true\n',
}


@pytest.mark.parametrize("kind", sorted(DISCONNECT_CONFIGS))
def test_disconnect_policy_closes_the_stalled_subscriber(own_server, tmp_path, kind):
    """With `slow-consumer = "disconnect"` (or no slow-consumer setting), a stalled subscriber is cut off once its
    held messages pass max-pending-bytes (an ERROR saying "slow consumer", if it arrives at all, is queued behind what
    it did not read); what it did get is an in-order prefix (nothing conflated or dropped); a reading subscriber gets
    everything in order."""
    srv = own_server(config_args(tmp_path, DISCONNECT_CONFIGS[kind]))
    topic = f"/topic/dis.{uid()}"
    keys = ["a", "b", "c"]

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, topic, BULK_COUNT, BIG_BODY, keys, follow=reader)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= BULK_COUNT, 30,
                        f"the reading subscriber's {BULK_COUNT} messages")
        assert [seq(f) for f in reader.messages()] == list(range(BULK_COUNT))

        stalled_reader = Reader(stalled)
        stalled_reader.wait_for(lambda: stalled_reader.closed, 30, "the stalled subscriber's connection to close",
                                stop_on_close=False)
        assert stalled_reader.failure is None, stalled_reader.failure
        got = [seq(f) for f in stalled_reader.messages()]
        assert len(got) < BULK_COUNT, "the stalled subscriber was not cut off"
        assert got == list(range(len(got))), f"held messages not an in-order prefix: {got[:5]}...{got[-5:]}"
        for frame in stalled_reader.errors():
            assert "slow consumer" in frame.headers.get("message", ""), frame
    finally:
        close_all(pub, reader, stalled_reader or stalled)


def test_disconnect_policy_within_budget_loses_nothing(own_server, tmp_path):
    """Under `disconnect`, a stalled subscriber whose held messages stay under max-pending-bytes (4.5 MB published:
    part sits in the socket buffers, the rest, under 4 MiB, in the server) loses nothing: when it reads again it gets
    every message in order, then the RECEIPT of a SEND it made while stalled (RECEIPTs wait in order behind held
    messages), and it is still connected."""
    srv = own_server(config_args(tmp_path, '[[policy]]\nmatch = "/topic/dis.#"\nslow-consumer = "disconnect"\n'))
    topic = f"/topic/dis.{uid()}"
    count = 112  # x 40 KB = 4.5 MB

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, topic, count, BIG_BODY, ["a", "b"], follow=reader)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= count, 30, f"the reading subscriber's {count} messages")
        stalled.send_frame("SEND", [("destination", f"/topic/{uid()}"), ("receipt", "while-stalled")], b"x")
        stalled_reader = Reader(stalled)
        stalled_reader.wait_receipt("while-stalled", 30)
        assert not stalled_reader.errors(), stalled_reader.errors()
        frames = [f for _, f in stalled_reader.frames]
        got = [seq(f) for f in frames if f.command == "MESSAGE"]
        assert got == list(range(count)), f"got {len(got)} of {count}: {got[:3]}...{got[-3:]}"
        assert frames[-1].command == "RECEIPT", \
            f"the RECEIPT overtook held messages: {[f.command for f in frames][-5:]}"
        stalled_reader.roundtrip()
    finally:
        close_all(pub, reader, stalled_reader or stalled)


@pytest.mark.parametrize("policy", ["conflate", "drop-oldest"])
def test_over_max_pending_bytes_disconnects_in_any_mode(own_server, tmp_path, policy):
    """Conflation and drop-oldest bound what they hold in messages, not bytes: when what a stalled subscriber's
    subscriptions hold passes max-pending-bytes (1 MiB here; 64 keys x 40 KB conflated, or up to 1000 x 40 KB held by
    drop-oldest), it is disconnected as in the disconnect policy; the reading subscriber gets everything."""
    srv = own_server(["--max-pending-bytes", str(1 << 20), *config_args(
        tmp_path, f'[[policy]]\nmatch = "/topic/big.#"\nslow-consumer = "{policy}"\n')])
    topic = f"/topic/big.{uid()}"
    keys = [f"k{i}" for i in range(64)]

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, topic, BULK_COUNT, BIG_BODY, keys, follow=reader)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= BULK_COUNT, 30,
                        f"the reading subscriber's {BULK_COUNT} messages")
        assert [seq(f) for f in reader.messages()] == list(range(BULK_COUNT))

        stalled_reader = Reader(stalled)
        stalled_reader.wait_for(lambda: stalled_reader.closed, 20, "the stalled subscriber's connection to close",
                                stop_on_close=False)
        assert stalled_reader.failure is None, stalled_reader.failure
        assert stalled_reader.message_count < BULK_COUNT
        for frame in stalled_reader.errors():
            assert "slow consumer" in frame.headers.get("message", ""), frame
    finally:
        close_all(pub, reader, stalled_reader or stalled)


@pytest.mark.parametrize("policy,deflate", [("conflate", "off"), ("conflate", "deflate"), ("conflate", "takeover"),
                                            ("disconnect", "off"), ("disconnect", "deflate")])
def test_stalled_websocket_subscriber(own_server, tmp_path, policy, deflate):
    """The same over WebSocket (plain, permessage-deflate, and deflate with the server keeping its compression
    context: held messages must be compressed when written, in write order): a stalled WebSocket subscriber on a
    conflate topic stays connected and then gets the last value of every key; on a disconnect topic it is closed
    (close code 1008 if the close frame arrives at all, after an ERROR saying "slow consumer" if that does). A TCP
    reader gets everything either way."""
    takeover = 'deflate-context-takeover = "on"\n\n' if deflate == "takeover" else ""
    srv = own_server(config_args(
        tmp_path, takeover + '[[policy]]\nmatch = "/topic/conflate.#"\nslow-consumer = "conflate"\n\n'
                             '[[policy]]\nmatch = "/topic/disconnect.#"\nslow-consumer = "disconnect"\n'))
    topic = f"/topic/{policy}.{uid()}"
    keys = [f"k{i}" for i in range(8)]
    last_of_key = {k: max(i for i in range(BULK_COUNT) if i % len(keys) == n) for n, k in enumerate(keys)}

    stalled = connect(srv, WsStomp, rcvbuf=4096, deflate=deflate != "off")
    if deflate != "off":
        assert stalled.no_context_takeover == (deflate == "deflate"), "server_no_context_takeover not as configured"
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, topic, BULK_COUNT, BIG_BODY, keys, follow=reader)
        finish_publishing(pub)
        reader.wait_for(lambda: reader.message_count >= BULK_COUNT, 30,
                        f"the reading subscriber's {BULK_COUNT} messages")
        assert [seq(f) for f in reader.messages()] == list(range(BULK_COUNT))

        stalled_reader = Reader(stalled)
        if policy == "conflate":
            stalled_reader.wait_for(
                lambda: all(last_of_key[k] in per_key([f for _, f in stalled_reader.frames if f.command == "MESSAGE"])
                            .get(k, []) for k in keys),
                30, "the last message of every key at the stalled WebSocket subscriber")
            assert not stalled_reader.errors(), stalled_reader.errors()
            for k, seqs in per_key(stalled_reader.messages()).items():
                assert seqs == sorted(set(seqs)), f"key {k}: x-seq not strictly increasing: {seqs}"
            assert stalled_reader.message_count < BULK_COUNT
            stalled_reader.roundtrip()
        else:
            stalled_reader.wait_for(lambda: stalled_reader.closed, 30, "the stalled WebSocket subscriber to be closed",
                                    stop_on_close=False)
            assert stalled_reader.failure is None, stalled_reader.failure
            got = [seq(f) for f in stalled_reader.messages()]
            assert len(got) < BULK_COUNT and got == list(range(len(got)))
            for frame in stalled_reader.errors():
                assert "slow consumer" in frame.headers.get("message", ""), frame
            assert stalled.close_code in (None, 1008), f"WebSocket close code {stalled.close_code}, expected 1008"
    finally:
        close_all(pub, reader, stalled_reader or stalled)


def frames_after_receipt(reader: Reader, receipt: str) -> list[Frame]:
    with reader.cond:
        frames = [f for _, f in reader.frames]
    for i, f in enumerate(frames):
        if f.command == "RECEIPT" and f.headers.get("receipt-id") == receipt:
            return frames[i + 1:]
    raise AssertionError(f"no RECEIPT {receipt!r}")


@pytest.mark.parametrize("policy", ["conflate", "drop-oldest"])
def test_unsubscribe_discards_what_a_stalled_subscription_held(own_server, tmp_path, policy):
    """A stalled subscriber UNSUBSCRIBEs (it can still send) while the server holds messages for it, then reuses the
    subscription id for another topic: after the UNSUBSCRIBE's RECEIPT no MESSAGE of the old topic arrives (what was
    held is discarded, not sent when the socket drains), and the new subscription gets its own messages."""
    extra = "max-pending-messages = 20\n" if policy == "drop-oldest" else ""  # 20 x 40 KB: under max-pending-bytes
    srv = own_server(config_args(tmp_path, f'[[policy]]\nmatch = "/topic/uns.#"\nslow-consumer = "{policy}"\n{extra}'))
    run = uid()
    topic, other = f"/topic/uns.{run}.old", f"/topic/uns.{run}.new"

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, topic)
    reader = Reader(connect(srv))
    subscribe_reading(reader, topic)
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, topic, BULK_COUNT, BIG_BODY, [f"k{i}" for i in range(8)], follow=reader)
        finish_publishing(pub)
        stalled.send_frame("UNSUBSCRIBE", [("id", "s"), ("receipt", "unsub")])
        stalled.send_frame("SUBSCRIBE", [("id", "s"), ("destination", other), ("receipt", "resub")])
        stalled_reader = Reader(stalled)
        stalled_reader.wait_receipt("resub", 30)
        for i in range(3):
            pub.send_frame("SEND", [("destination", other), ("x-seq", str(100_000 + i))], b"new")
        stalled_reader.wait_for(lambda: sum(1 for _, f in stalled_reader.frames if f.command == "MESSAGE"
                                            and f.headers["destination"] == other) >= 3, 10,
                                "the new subscription's 3 messages")
        stalled_reader.roundtrip()
        assert not stalled_reader.errors(), stalled_reader.errors()
        late = [seq(f) for f in frames_after_receipt(stalled_reader, "unsub")
                if f.command == "MESSAGE" and f.headers["destination"] == topic]
        assert not late, f"{len(late)} MESSAGEs of the unsubscribed topic after the UNSUBSCRIBE's RECEIPT: {late}"
        new = [f for f in stalled_reader.messages() if f.headers["destination"] == other]
        assert [seq(f) for f in new] == [100_000, 100_001, 100_002]
        assert all(f.headers.get("subscription") == "s" for f in new)
    finally:
        close_all(pub, reader, stalled_reader or stalled)


def test_unsubscribe_discards_a_rate_held_update(server):
    """With `x-max-rate:1`, updates right after a MESSAGE are held for about a second. UNSUBSCRIBE then (and reuse
    the id for another topic): the held update never arrives, not even 1.5 s later under the reused id."""
    topic, other = f"/topic/{uid()}", f"/topic/{uid()}"
    sub = Reader(connect(server))
    subscribe_reading(sub, topic, "s", {"x-max-rate": "1"})
    pub = publisher(server)
    try:
        pub.send_frame("SEND", [("destination", topic), ("x-seq", "0")], b"0")
        sub.wait_for(lambda: sub.message_count >= 1, 5, "the first update")
        first_at = time.monotonic()
        for i in (1, 2):
            pub.send_frame("SEND", [("destination", topic), ("x-seq", str(i))], str(i))
        finish_publishing(pub, 5)
        sub.client.send_frame("UNSUBSCRIBE", [("id", "s"), ("receipt", "unsub")])
        sub.wait_receipt("unsub")
        subscribe_reading(sub, other, "s")
        # Wait past the moment the held update was due (1 s after the first), for anything that should not come.
        with sub.cond:
            sub.cond.wait_for(lambda: any(f.command == "MESSAGE" and f.headers["destination"] == topic
                                          for f in frames_after_receipt_unlocked(sub, "unsub")),
                              max(0.0, first_at + 2.0 - time.monotonic()))
        pub.send_frame("SEND", [("destination", other), ("x-seq", "10")], b"new")
        sub.wait_for(lambda: any(f.command == "MESSAGE" and f.headers["destination"] == other for _, f in sub.frames),
                     5, "the new subscription's message")
        late = [seq(f) for f in frames_after_receipt(sub, "unsub")
                if f.command == "MESSAGE" and f.headers["destination"] == topic]
        assert not late, f"MESSAGEs of the unsubscribed topic after the UNSUBSCRIBE's RECEIPT: {late}"
        assert [f.headers.get("subscription") for f in sub.messages() if f.headers["destination"] == other] == ["s"]
    finally:
        close_all(pub, sub)


def frames_after_receipt_unlocked(reader: Reader, receipt: str) -> list[Frame]:
    """frames_after_receipt for a caller holding reader.cond."""
    frames = [f for _, f in reader.frames]
    for i, f in enumerate(frames):
        if f.command == "RECEIPT" and f.headers.get("receipt-id") == receipt:
            return frames[i + 1:]
    return []


# --------------------------------------------------------------------------------------------------
# 4./5. rate caps
# --------------------------------------------------------------------------------------------------

RATE_KEYS = ["a", "b"]
RATE_TOTAL = 200.0  # updates per second, over both keys
RATE_SECONDS = 3.0


def publish_paced(pub: RawTcpStomp, destination: str) -> tuple[float, float, dict[str, int]]:
    """~200 updates/s for 3 s alternating x-keys a and b (x-seq 0..599). Returns (start, end, last x-seq per key),
    end being when the RECEIPT of a frame after the last update arrived (the server has handled them all)."""
    n = int(RATE_TOTAL * RATE_SECONDS)
    start = time.monotonic()
    for i in range(n):
        due = start + i / RATE_TOTAL
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the publisher, not waiting for a condition
        pub.send_frame("SEND", [("destination", destination), ("x-key", RATE_KEYS[i % 2]), ("x-seq", str(i))],
                       f"v{i}")
    finish_publishing(pub, 10)
    end = time.monotonic()
    last = {k: max(i for i in range(n) if i % 2 == j) for j, k in enumerate(RATE_KEYS)}
    return start, end, last


def check_capped(reader: Reader, rate: float, start: float, end: float, last: dict[str, int],
                 final_within: float, label: str) -> dict[str, int]:
    """The subscriber read by ``reader`` got, per key, at most rate*duration+2 messages, at least a few, in x-seq
    order, ending with the key's last value, which arrived within ``final_within`` s of ``end``."""
    reader.wait_for(lambda: all(any(f.command == "MESSAGE" and f.headers.get("x-key") == k and seq(f) == s
                                    for _, f in reader.frames) for k, s in last.items()),
                    final_within + 5, f"{label}: the last value of every key")
    timed = reader.timed_messages()
    duration = end - start
    counts = {}
    for k in RATE_KEYS:
        mine = [(t, seq(f)) for t, f in timed if f.headers.get("x-key") == k]
        seqs = [s for _, s in mine]
        counts[k] = len(mine)
        assert seqs == sorted(set(seqs)), f"{label} key {k}: x-seq not increasing: {seqs}"
        assert seqs[-1] == last[k], f"{label} key {k}: last x-seq {seqs[-1]}, published last {last[k]}"
        arrived = mine[-1][0] - end
        assert arrived <= final_within, \
            f"{label} key {k}: the last value arrived {arrived:.2f}s after publishing ended (> {final_within}s)"
        assert len(mine) <= rate * duration + 2, \
            f"{label} key {k}: {len(mine)} messages in {duration:.2f}s, more than {rate}/s allows: {seqs}"
        at_least = max(2, int(rate * RATE_SECONDS / 2))
        assert len(mine) >= at_least, f"{label} key {k}: only {len(mine)} messages ({seqs}), expected >= {at_least}"
    return counts


def test_x_max_rate_caps_updates_per_key(own_server):
    """`x-max-rate:5` on a topic getting 200 updates/s on two x-keys for 3 s: at most ~5/s per key, at least a few,
    in order, and each key's last value within 1 s after publishing ends. Subscribers without the header, or with
    `x-max-rate:0` (unlimited), on the same topic get every update."""
    srv = own_server()
    topic = f"/topic/{uid()}"
    capped = Reader(connect(srv))
    subscribe_reading(capped, topic, headers={"x-max-rate": "5"})
    full = Reader(connect(srv))
    subscribe_reading(full, topic)
    unlimited = Reader(connect(srv))
    subscribe_reading(unlimited, topic, headers={"x-max-rate": "0"})
    pub = publisher(srv)
    try:
        start, end, last = publish_paced(pub, topic)
        n = int(RATE_TOTAL * RATE_SECONDS)
        for label, r in (("no x-max-rate", full), ("x-max-rate:0", unlimited)):
            r.wait_for(lambda r=r: r.message_count >= n, 10,
                       f"{label}: all {n} updates")
            assert [seq(f) for f in r.messages()] == list(range(n)), label
        check_capped(capped, 5, start, end, last, 1.0, "x-max-rate:5")
    finally:
        close_all(pub, capped, full, unlimited)


def test_policy_max_rate_and_x_max_rate_the_lower_applies(own_server, tmp_path):
    """Under a policy `max-rate = 2`: `x-max-rate:10` still gets at most ~2/s per key, no header gets ~2/s too, and
    `x-max-rate:1` (lower than the policy) ~1/s; every one gets each key's last value."""
    srv = own_server(config_args(tmp_path, '[[policy]]\nmatch = "/topic/capped.#"\nmax-rate = 2\n'))
    topic = f"/topic/capped.{uid()}"
    asks_10 = Reader(connect(srv))
    subscribe_reading(asks_10, topic, headers={"x-max-rate": "10"})
    asks_none = Reader(connect(srv))
    subscribe_reading(asks_none, topic)
    asks_1 = Reader(connect(srv))
    subscribe_reading(asks_1, topic, headers={"x-max-rate": "1"})
    pub = publisher(srv)
    try:
        start, end, last = publish_paced(pub, topic)
        check_capped(asks_10, 2, start, end, last, 1.5, "policy 2, x-max-rate:10")
        check_capped(asks_none, 2, start, end, last, 1.5, "policy 2, no x-max-rate")
        check_capped(asks_1, 1, start, end, last, 2.5, "policy 2, x-max-rate:1")
    finally:
        close_all(pub, asks_10, asks_none, asks_1)


# --------------------------------------------------------------------------------------------------
# 6. bad x-max-rate
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "1e9", "5000", "1001", "", "inf", "nan", "0x10", "5/s"])
def test_bad_x_max_rate_is_an_error(server, value):
    """x-max-rate must be a decimal number from 0 to 1000: anything else is an ERROR naming x-max-rate. (Accepted
    values are checked on the same server so the test cannot pass by refusing every SUBSCRIBE with the header.)"""
    srv = server
    topic = f"/topic/{uid()}"
    client = connect(srv)
    try:
        client.send_frame("SUBSCRIBE", [("id", "s"), ("destination", topic), ("x-max-rate", value),
                                        ("receipt", "r")])
        frame = client.recv_until("RECEIPT", 5)
        assert frame.command == "ERROR", f"x-max-rate:{value!r} was accepted: {frame!r}"
        assert "x-max-rate" in frame.headers.get("message", ""), frame
    finally:
        client.close()
    good = connect(srv)
    try:
        for i, ok in enumerate(["0.5", "0", "1000", "2", "10"]):
            good.send_frame("SUBSCRIBE", [("id", f"g{i}"), ("destination", topic), ("x-max-rate", ok),
                                          ("receipt", f"g{i}")])
            frame = good.recv_until("RECEIPT", 5)
            assert frame.command == "RECEIPT", f"x-max-rate:{ok} refused: {frame!r}"
    finally:
        good.close()


@pytest.mark.parametrize("kind", ["queue", "room", "durable-topic"])
def test_x_max_rate_only_on_plain_topic_subscriptions(server, kind):
    """docs/slow-consumers.md: x-max-rate on a queue, room or durable topic subscription is an ERROR naming
    x-max-rate (the same SUBSCRIBE without the header is accepted)."""
    destination = {"queue": f"/queue/{uid()}", "room": f"/room/{uid()}", "durable-topic": f"/topic/{uid()}"}[kind]
    extra = [("durable", "true")] if kind == "durable-topic" else []
    connect_extra = [("client-id", uid())] if kind == "durable-topic" else []
    for with_header in (False, True):
        client = RawTcpStomp(server.stomp_port)
        try:
            assert client.connect("1.2", extra=connect_extra).command == "CONNECTED"
            headers = [("id", "s"), ("destination", destination), ("receipt", "r"), *extra]
            if with_header:
                headers.append(("x-max-rate", "5"))
            client.send_frame("SUBSCRIBE", headers)
            frame = client.recv_until("RECEIPT", 5)
            if with_header:
                assert frame.command == "ERROR", f"x-max-rate on a {kind} subscription was accepted: {frame!r}"
                assert "x-max-rate" in frame.headers.get("message", ""), frame
            else:
                assert frame.command == "RECEIPT", f"a plain {kind} SUBSCRIBE was refused: {frame!r}"
                if kind == "durable-topic":  # end the durable subscription again
                    client.send_frame("UNSUBSCRIBE", [("id", "s"), ("durable", "true"), ("receipt", "u")])
                    assert client.recv_until("RECEIPT", 5).command == "RECEIPT"
        finally:
            client.close()


def publish_and_check_alive(srv: StarlingServer, destination: str, sub: Reader | None) -> None:
    """Three updates to ``destination``; then the server is still up and serving (a new client's SEND gets its
    RECEIPT), and ``sub`` (if given, a subscriber of the destination) got the first update: the first update of a key
    is never held (no earlier MESSAGE to space it from)."""
    pub = publisher(srv)
    try:
        for i in range(3):
            pub.send_frame("SEND", [("destination", destination), ("x-seq", str(i))], f"v{i}")
        finish_publishing(pub, 10)
        if sub is not None:
            sub.wait_for(lambda: sub.message_count >= 1, 5, "the first update")
            assert seq(sub.messages()[0]) == 0
        probe = Reader(connect(srv))
        try:
            probe.roundtrip()
        finally:
            close_all(probe)
        assert srv.alive(), f"the server died:\n{srv.output()}"
    except (OSError, AssertionError, TimeoutError) as e:
        srv.wait(5)  # a crashing Swift process is still printing its backtrace for a moment
        if not srv.alive():
            crash = [line for line in srv.output().splitlines() if "Fatal error" in line or " at /" in line][:4]
            pytest.fail(f"the server crashed: {crash}", pytrace=False)
        raise e
    finally:
        pub.close()


@pytest.mark.parametrize("value", ["0.00000000001", "0.0000000001", "0.000001"])
def test_tiny_x_max_rate_is_accepted_or_refused_but_never_crashes(own_server, value):
    """A very small positive x-max-rate is a decimal number > 0: the SUBSCRIBE either gets its RECEIPT (and then the
    first update arrives) or an ERROR naming x-max-rate; either way publishing to the topic leaves the server up."""
    srv = own_server()
    topic = f"/topic/{uid()}"
    sub = Reader(connect(srv))
    try:
        receipt = "tiny"
        sub.client.send_frame("SUBSCRIBE", [("id", "s"), ("destination", topic), ("x-max-rate", value),
                                            ("receipt", receipt)])
        sub.wait_for(lambda: any(f.command in ("RECEIPT", "ERROR") for _, f in sub.frames), 5, "RECEIPT or ERROR")
        errors = sub.errors()
        if errors:
            assert "x-max-rate" in errors[0].headers.get("message", ""), errors[0]
        publish_and_check_alive(srv, topic, None if errors else sub)
    finally:
        close_all(sub)


def test_tiny_policy_max_rate_is_refused_or_never_crashes(tmp_path):
    """A policy `max-rate` that small either stops the server at start naming max-rate, or the server starts and
    publishing to a subscribed topic under it leaves the server up."""
    srv = StarlingServer(tmp_path / "data", config_args(
        tmp_path, '[[policy]]\nmatch = "/topic/slow.#"\nmax-rate = "0.00000000001"\n'))
    try:
        try:
            srv.start()
        except ServerStartError as e:
            assert "max-rate" in str(e), str(e)
            return
        topic = f"/topic/slow.{uid()}"
        sub = Reader(connect(srv))
        try:
            subscribe_reading(sub, topic)
            publish_and_check_alive(srv, topic, sub)
        finally:
            close_all(sub)
    finally:
        srv.stop()


# --------------------------------------------------------------------------------------------------
# 7. configuration errors
# --------------------------------------------------------------------------------------------------

CONFIG_CASES = {
    # name: (bad config, the key the error must name, the same config made valid)
    "conflate-on-room": ('[[policy]]\nmatch = "/room/r.#"\nslow-consumer = "conflate"\n', "slow-consumer",
                         '[[policy]]\nmatch = "/room/r.#"\nslow-consumer = "disconnect"\n'),
    "drop-oldest-on-room": ('[[policy]]\nmatch = "/room/r.#"\nslow-consumer = "drop-oldest"\n', "slow-consumer",
                            '[[policy]]\nmatch = "/topic/r.#"\nslow-consumer = "drop-oldest"\n'),
    "bogus-slow-consumer": ('[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "bogus"\n', "slow-consumer",
                            '[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "conflate"\n'),
    "negative-max-rate": ('[[policy]]\nmatch = "/topic/t.#"\nmax-rate = -1\n', "max-rate",
                          '[[policy]]\nmatch = "/topic/t.#"\nmax-rate = 5\n'),
    "text-max-rate": ('[[policy]]\nmatch = "/topic/t.#"\nmax-rate = "fast"\n', "max-rate",
                      '[[policy]]\nmatch = "/topic/t.#"\nmax-rate = 0\n'),
    "text-max-pending-messages": ('[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "drop-oldest"\n'
                                  'max-pending-messages = "many"\n', "max-pending-messages",
                                  '[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "drop-oldest"\n'
                                  'max-pending-messages = 200\n'),
    "negative-max-pending-messages": ('[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "drop-oldest"\n'
                                      'max-pending-messages = -5\n', "max-pending-messages",
                                      '[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "drop-oldest"\n'
                                      'max-pending-messages = 5\n'),
    "misspelt-key": ('[[policy]]\nmatch = "/topic/t.#"\nslow-consumers = "conflate"\n', "slow-consumers",
                     '[[policy]]\nmatch = "/topic/t.#"\nslow-consumer = "conflate"\n'),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_policy_is_an_error_at_start(tmp_path, case):
    """A wrong slow-consumer, max-rate or max-pending-messages in a [[policy]] table (or a misspelt key): the server
    refuses to start, naming the key. (test_valid_policy_variants_start checks that the same tables with valid values
    start.)"""
    bad, key, _ = CONFIG_CASES[case]
    srv = StarlingServer(tmp_path / "bad", config_args(tmp_path, bad, "bad.toml"))
    try:
        with pytest.raises(ServerStartError) as failure:
            srv.start()
    finally:
        srv.stop()
    assert key in str(failure.value), str(failure.value)


def test_valid_policy_variants_start(tmp_path):
    """The valid variants of CONFIG_CASES, all in one file (first match wins, so repeated patterns are fine): the
    server starts, so each bad case is refused for its value, not for its key or table."""
    good = "\n".join(CONFIG_CASES[case][2] for case in sorted(CONFIG_CASES))
    srv = StarlingServer(tmp_path / "good", config_args(tmp_path, good, "good.toml"))
    try:
        srv.start()
    except ServerStartError as e:
        pytest.fail(f"the valid variants did not start:\n{good}\n{e}", pytrace=False)
    finally:
        srv.stop()


# --------------------------------------------------------------------------------------------------
# 8. queues
# --------------------------------------------------------------------------------------------------


def test_queue_stops_dispatching_to_a_stalled_consumer(own_server):
    """Two auto-ack consumers on one queue, one stalled: it stops getting messages (they stay in the queue for the
    other) and is not disconnected; the reading consumer gets the rest. What the reader got plus what the stalled
    one reads when it finally reads is every message exactly once."""
    srv = own_server()
    queue = f"/queue/{uid()}"
    count, body = 1000, 20_000

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, queue, headers={"ack": "auto"})
    reader = Reader(connect(srv))
    subscribe_reading(reader, queue, headers={"ack": "auto"})
    pub = publisher(srv)
    stalled_reader = None
    try:
        publish_bulk(pub, queue, count, body, None)
        finish_publishing(pub)
        stalled_reader = Reader(stalled)

        def total():
            return reader.message_count + stalled_reader.message_count

        deadline = time.monotonic() + 30
        while total() < count and time.monotonic() < deadline:
            with reader.cond:
                reader.cond.wait(0.2)
        got_reader = [seq(f) for f in reader.messages()]
        got_stalled = [seq(f) for f in stalled_reader.messages()]
        assert not reader.errors() and not stalled_reader.errors(), (reader.errors(), stalled_reader.errors())
        assert not stalled_reader.closed, "the stalled queue consumer was disconnected"
        assert sorted(got_reader + got_stalled) == list(range(count)), \
            f"reader {len(got_reader)} + stalled {len(got_stalled)} messages are not each of {count} exactly once"
        assert got_reader == sorted(got_reader) and got_stalled == sorted(got_stalled)
        assert len(got_stalled) < count // 2, \
            f"the stalled consumer was dispatched {len(got_stalled)} of {count}: dispatch did not stop"
        stalled_reader.roundtrip()

        # Caught up, it gets messages again: 20 more small ones are shared by both, each delivered once.
        more = 20
        for i in range(count, count + more):
            pub.send_frame("SEND", [("destination", queue), ("x-seq", str(i))], b"after")
        deadline = time.monotonic() + 10
        while total() < count + more and time.monotonic() < deadline:
            with reader.cond:
                reader.cond.wait(0.2)
        after_reader = [seq(f) for f in reader.messages() if seq(f) >= count]
        after_stalled = [seq(f) for f in stalled_reader.messages() if seq(f) >= count]
        assert sorted(after_reader + after_stalled) == list(range(count, count + more)), (after_reader, after_stalled)
        assert after_stalled, "the formerly stalled consumer got none of the messages sent after it caught up"
    finally:
        close_all(pub, reader, stalled_reader or stalled)


# --------------------------------------------------------------------------------------------------
# 9. last value + conflate + x-max-rate
# --------------------------------------------------------------------------------------------------


def test_last_value_snapshot_then_rate_capped_live_updates(own_server, tmp_path):
    """On a `last-value = true`, `slow-consumer = "conflate"` topic tree, a wildcard subscriber with `x-max-rate:5`
    joining while a publisher updates 20 symbols (~600 updates/s) first gets `x-snapshot:true` for every symbol, then
    live updates (rate-capped, so conflated), no symbol's value ever going backwards or repeating, ending with every
    symbol's last value."""
    srv = own_server(config_args(
        tmp_path, '[[policy]]\nmatch = "/topic/lvc.#"\nlast-value = true\nslow-consumer = "conflate"\n'))
    run = uid()
    symbols = [f"s{i}" for i in range(20)]
    pub = publisher(srv)
    for s in symbols:
        pub.send_frame("SEND", [("destination", f"/topic/lvc.{run}.{s}"), ("x-key", s), ("x-seq", "0")], "0")
    finish_publishing(pub, 10)

    rounds = 60
    failure: list[BaseException] = []
    half_way = threading.Event()

    def publish():
        try:
            start = time.monotonic()
            for n in range(1, rounds + 1):
                delay = start + n / 30 - time.monotonic()  # 30 rounds/s: 2 s
                if delay > 0:
                    time.sleep(delay)  # pacing
                for s in symbols:
                    pub.send_frame("SEND", [("destination", f"/topic/lvc.{run}.{s}"), ("x-key", s),
                                            ("x-seq", str(n))], str(n))
                if n == rounds // 4:
                    half_way.set()
            finish_publishing(pub, 10)
        except BaseException as e:  # noqa: BLE001
            failure.append(e)
            half_way.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    sub = Reader(connect(srv))
    try:
        assert half_way.wait(10)
        subscribed_at = time.monotonic()
        subscribe_reading(sub, f"/topic/lvc.{run}.*", "w", {"x-max-rate": "5"})
        thread.join(30)
        assert not thread.is_alive() and not failure, failure
        published_end = time.monotonic()

        def finals_in():
            values = {}
            for _, f in sub.frames:
                if f.command == "MESSAGE":
                    values[f.headers["destination"]] = f.body
            return all(values.get(f"/topic/lvc.{run}.{s}") == str(rounds).encode() for s in symbols)

        sub.wait_for(finals_in, 10, "every symbol's last value")
        timed = sub.timed_messages()
        by_symbol: dict[str, list[tuple[float, Frame]]] = {}
        for t, f in timed:
            by_symbol.setdefault(f.headers["destination"].rsplit(".", 1)[1], []).append((t, f))
        assert sorted(by_symbol) == sorted(symbols)
        for s, got in by_symbol.items():
            frames = [f for _, f in got]
            assert frames[0].headers.get("x-snapshot") == "true", (s, frames[0].headers)
            assert all("x-snapshot" not in f.headers for f in frames[1:]), (s, [f.headers for f in frames])
            values = [int(f.body) for f in frames]
            assert values == sorted(set(values)), f"{s}: values went backwards or repeated: {values}"
            assert values[-1] == rounds
            live = len(frames) - 1
            window = got[-1][0] - subscribed_at
            assert live <= 5 * window + 2, f"{s}: {live} live updates in {window:.2f}s with x-max-rate:5: {values}"
        assert published_end - subscribed_at > 1.0, "the subscriber joined too late for the rate cap to show"
    finally:
        close_all(pub, sub)


def test_last_value_snapshot_to_a_subscriber_that_is_already_slow(own_server, tmp_path):
    """A subscriber whose socket is already full (stalled on a big conflated topic) SUBSCRIBEs to a wildcard of
    last-value + conflate topics while a publisher keeps updating them: when it reads again it gets, per symbol, first
    the `x-snapshot:true` value, then only newer live values (none older than or equal to the snapshot: held live
    updates must not overtake or repeat it), ending with the last value; the big topic's last message arrives too."""
    srv = own_server(config_args(
        tmp_path, '[[policy]]\nmatch = "/topic/lvs.#"\nlast-value = true\nslow-consumer = "conflate"\n'))
    run = uid()
    fill = f"/topic/lvs.{run}.fill"
    symbols = [f"s{i}" for i in range(10)]
    pub = publisher(srv)
    for s in symbols:
        pub.send_frame("SEND", [("destination", f"/topic/lvs.{run}.sym.{s}"), ("x-seq", "0")], "0")
    finish_publishing(pub, 10)

    stalled = connect(srv, StalledTcpStomp)
    subscribe_now(stalled, fill, "fill")
    stalled_reader = None
    try:
        fill_count = 150  # 6 MB: more than the socket buffers take, so the client is slow from here on
        publish_bulk(pub, fill, fill_count, BIG_BODY, None)
        finish_publishing(pub)

        rounds = 40
        failure: list[BaseException] = []
        quarter = threading.Event()

        def publish():
            try:
                start = time.monotonic()
                for n in range(1, rounds + 1):
                    delay = start + n / 30 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing
                    for s in symbols:
                        pub.send_frame("SEND", [("destination", f"/topic/lvs.{run}.sym.{s}"), ("x-seq", str(n))],
                                       str(n))
                    if n == rounds // 4:
                        quarter.set()
                finish_publishing(pub, 10)
            except BaseException as e:  # noqa: BLE001
                failure.append(e)
                quarter.set()

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        assert quarter.wait(10)
        stalled.send_frame("SUBSCRIBE", [("id", "lv"), ("destination", f"/topic/lvs.{run}.sym.*"), ("receipt", "lv")])
        thread.join(30)
        assert not thread.is_alive() and not failure, failure

        stalled_reader = Reader(stalled)

        def finals_in():
            values = {}
            for _, f in stalled_reader.frames:
                if f.command == "MESSAGE" and f.headers.get("subscription") == "lv":
                    values[f.headers["destination"]] = f.body
            return all(values.get(f"/topic/lvs.{run}.sym.{s}") == str(rounds).encode() for s in symbols)

        stalled_reader.wait_for(finals_in, 30, "every symbol's last value at the formerly slow subscriber")
        stalled_reader.wait_for(lambda: any(f.command == "MESSAGE" and f.headers.get("subscription") == "fill"
                                            and seq(f) == fill_count - 1 for _, f in stalled_reader.frames),
                                10, "the big topic's last message")
        assert not stalled_reader.errors(), stalled_reader.errors()
        by_symbol: dict[str, list[Frame]] = {}
        for f in stalled_reader.messages():
            if f.headers.get("subscription") == "lv":
                by_symbol.setdefault(f.headers["destination"].rsplit(".", 1)[1], []).append(f)
        assert sorted(by_symbol) == sorted(symbols)
        for s, frames in by_symbol.items():
            assert frames[0].headers.get("x-snapshot") == "true", (s, [(f.body, f.headers) for f in frames])
            assert all("x-snapshot" not in f.headers for f in frames[1:]), (s, [(f.body, f.headers) for f in frames])
            values = [int(f.body) for f in frames]
            assert values == sorted(set(values)), f"{s}: values went backwards or repeated: {values}"
        stalled_reader.roundtrip()
    finally:
        close_all(pub, stalled_reader or stalled)
