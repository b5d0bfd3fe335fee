"""`GET /metrics` (issue 10): Prometheus text format on the plain HTTP port.

Each test takes a scrape, runs a scripted workload with hand-written clients, takes another scrape and checks the
exact deltas (counters) or values (gauges). The server is started per test (`own_server`, a fresh process costs well
under a second) wherever something else talking to it could disturb an exact figure, and otherwise shared by the
module. The Prometheus text format is parsed here by a small strict parser (no third-party one): every line must be
a comment, a `# HELP`/`# TYPE` line or a sample `name{label="value",...} value`.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import threading
import time

import pytest

from e2e_helpers import (
    RawStompBase,
    RawTcpStomp,
    RawWsStomp,
    StarlingServer,
    assert_still_alive,
    encode_frame,
    http_request,
    starling_bin,
    start_or_fail,
    uid,
    ws_handshake_request,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RECEIVED_KINDS = ["topic", "queue", "room", "user", "temp-queue", "presence"]
DELIVERED_KINDS = ["topic", "room", "queue"]
ERROR_REASONS = ["protocol", "limit", "auth", "access", "token", "slow_consumer", "shutdown"]
LIMITS = ["max-connections", "max-connections-per-ip", "max-frame-rate", "max-body-size", "max-header-count",
          "max-header-length", "max-subscriptions", "max-transactions", "max-pending-bytes", "max-held-input",
          "connect-timeout", "failed-login-limit", "allowed-origins"]
CONNECTION_KINDS = [("tcp", "false", "false"), ("tcp", "true", "false"), ("ws", "false", "false"),
                    ("ws", "false", "true"), ("ws", "true", "false"), ("ws", "true", "true")]

# --------------------------------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ParseError(AssertionError):
    pass


def _parse_value(text: str, line: str) -> float:
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"bad sample value {text!r} in line {line!r}") from None


def _parse_sample(line: str) -> tuple[str, tuple[tuple[str, str], ...], float]:
    m = _NAME.match(line)
    if not m:
        raise ParseError(f"no metric name at the start of {line!r}")
    name, i = m.group(0), m.end()
    labels: list[tuple[str, str]] = []
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            if i < len(line) and line[i] == "}":
                i += 1
                break
            lm = _LABEL_NAME.match(line, i)
            if not lm:
                raise ParseError(f"bad label name at column {i} of {line!r}")
            i = lm.end()
            if line[i:i + 2] != '="':
                raise ParseError(f"expected =\" after label {lm.group(0)!r} in {line!r}")
            i += 2
            value = []
            while True:
                if i >= len(line):
                    raise ParseError(f"unterminated label value in {line!r}")
                ch = line[i]
                if ch == "\\":
                    if i + 1 >= len(line) or line[i + 1] not in _LABEL_ESCAPES:
                        raise ParseError(f"bad escape in a label value of {line!r}")
                    value.append(_LABEL_ESCAPES[line[i + 1]])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    value.append(ch)
                    i += 1
            if any(k == lm.group(0) for k, _ in labels):
                raise ParseError(f"label {lm.group(0)!r} repeated in {line!r}")
            labels.append((lm.group(0), "".join(value)))
            if i < len(line) and line[i] == ",":
                i += 1
            elif i < len(line) and line[i] == "}":
                i += 1
                break
            else:
                raise ParseError(f"expected , or }} at column {i} of {line!r}")
    rest = line[i:]
    if not rest.startswith((" ", "\t")):
        raise ParseError(f"no space before the value in {line!r}")
    parts = rest.split()
    if len(parts) not in (1, 2):
        raise ParseError(f"expected a value and an optional timestamp in {line!r}")
    if len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1]):
        raise ParseError(f"bad timestamp in {line!r}")
    return name, tuple(sorted(labels)), _parse_value(parts[0], line)


class Metrics:
    """One parsed scrape: ``types`` (family -> type), ``samples`` ((name, sorted label pairs) -> value)."""

    def __init__(self, text: str):
        self.text = text
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.samples: dict[tuple[str, tuple], float] = {}
        self.order: list[tuple[str, tuple]] = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    if len(parts) != 4 or not _NAME.fullmatch(parts[2]):
                        raise ParseError(f"bad TYPE line {line!r}")
                    if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        raise ParseError(f"unknown type in {line!r}")
                    if parts[2] in self.types:
                        raise ParseError(f"second TYPE line for {parts[2]}")
                    self.types[parts[2]] = parts[3]
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) == 4 else ""
                continue
            name, labels, value = _parse_sample(line)
            key = (name, labels)
            if key in self.samples:
                raise ParseError(f"series {name}{dict(labels)} appears twice")
            self.samples[key] = value
            self.order.append(key)

    def family(self, sample_name: str) -> str | None:
        """The metric family a sample belongs to (a histogram's ``_bucket``/``_sum``/``_count`` are its own)."""
        if sample_name in self.types:
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample_name[: -len(suffix)]
            if sample_name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base
        return None

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.order if n == name]

    def get(self, name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            raise AssertionError(f"no series {name}{labels}; series of {name}: {self.series(name)}")
        return self.samples[key]

    def has(self, name: str, **labels) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.samples

    def histogram(self, name: str) -> tuple[list[tuple[float, float]], float, float]:
        """(buckets as (le, cumulative count) in the order given, sum, count)."""
        buckets = [(_parse_value(dict(labels)["le"], "le"), v) for (n, labels), v in
                   ((k, self.samples[k]) for k in self.order) if n == name + "_bucket"]
        return buckets, self.get(name + "_sum"), self.get(name + "_count")


def delta(before: Metrics, after: Metrics, name: str, **labels) -> float:
    return after.get(name, **labels) - before.get(name, **labels)


def by_label(before: Metrics, after: Metrics, name: str, label: str) -> dict[str, float]:
    """The delta of every series of ``name``, keyed by the value of its one label ``label``."""
    out = {}
    for labels in after.series(name):
        assert set(labels) == {label}, f"{name} has labels {labels}, expected just {label!r}"
        out[labels[label]] = delta(before, after, name, **labels)
    return out


def assert_deltas(before: Metrics, after: Metrics, name: str, label: str, expected: dict[str, float]) -> None:
    """Every series of ``name`` moved by ``expected[value of label]`` (0 for the ones not named): no double counting,
    nothing counted under another label."""
    got = by_label(before, after, name, label)
    want = {k: expected.get(k, 0) for k in got}
    assert got == want, f"{name} deltas by {label}: got {got}, expected {want}"


def scrape_raw(srv: StarlingServer, source: str | None = None, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """GET /metrics on a fresh connection (optionally from another loopback address); (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before the response header: {buf!r}")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "-1"))
        while length < 0 or len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        if length >= 0:
            assert len(body) == length, f"body of {len(body)} bytes, Content-Length {length}"
        return status, headers, body
    finally:
        s.close()


def scrape(srv: StarlingServer, source: str | None = None, timeout: float = 5.0) -> Metrics:
    status, headers, body = scrape_raw(srv, source, timeout)
    assert status == 200, (status, headers, body[:200])
    return Metrics(body.decode("utf-8"))


def wait_metrics(srv: StarlingServer, pred, what: str, timeout: float = 5.0, source: str | None = None) -> Metrics:
    """Scrape until ``pred(metrics)`` holds; the scrape that satisfied it."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(srv, source)
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# Clients that count their bytes
# --------------------------------------------------------------------------------------------------


class CountingTcp(RawTcpStomp):
    """A raw TCP STOMP client counting every byte it writes and reads."""

    def __init__(self, port: int, **kw):
        super().__init__(port, **kw)
        self.bytes_out = 0
        self.bytes_in = 0

    def _read(self, timeout: float):
        data = super()._read(timeout)
        if data:
            self.bytes_in += len(data)
        return data

    def send_raw(self, data: bytes) -> None:
        self.bytes_out += len(data)
        super().send_raw(data)


def ws_server_frame_size(n: int) -> int:
    """Bytes of an unmasked (server to client) WebSocket frame with an n-byte payload."""
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


def ws_client_frame_size(n: int) -> int:
    """Bytes of a masked (client to server) WebSocket frame with an n-byte payload."""
    return ws_server_frame_size(n) + 4


class CountingWs(RawWsStomp):
    """STOMP over the ``websockets`` library, recording the payload size of every message it sends and receives
    (keepalive pings off, so nothing else goes over the wire)."""

    def __init__(self, url: str, **kw):
        super().__init__(url, ping_interval=None, **kw)
        self.sent_payloads: list[int] = []
        self.received_payloads: list[int] = []

    def _read(self, timeout: float):
        data = super()._read(timeout)
        if data:
            self.received_payloads.append(len(data))
        return data

    def send_raw(self, data: bytes) -> None:
        self.sent_payloads.append(len(data))
        super().send_raw(data)


class StalledTcp(RawTcpStomp):
    """A raw TCP STOMP client with a small SO_RCVBUF set before connecting (so the TCP window stays small); the test
    does not read it for a while, and the server's socket buffers for it fill up."""

    def __init__(self, port: int, rcvbuf: int = 4096):
        RawStompBase.__init__(self)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))


def connected(client):
    frame = client.connect("1.2")
    assert frame.command == "CONNECTED", frame
    return client


def subscribe(client, destination: str, sub_id: str = "s", **headers) -> None:
    receipt = "sub-" + uid()
    client.send_frame("SUBSCRIBE", {"id": sub_id, "destination": destination, "receipt": receipt, **headers})
    early = []  # MESSAGEs (of a queue) may come before the RECEIPT: keep them for the test
    while True:
        frame = client.recv_frame(10)
        if frame.command == "RECEIPT" and frame.headers.get("receipt-id") == receipt:
            break
        assert frame.command == "MESSAGE", f"SUBSCRIBE {destination} refused: {frame!r}"
        early.append(frame)
    client.pending[:0] = early


def roundtrip(client, timeout: float = 30.0) -> None:
    """A SEND to a private topic with a receipt: once it arrives, the server handled everything this client sent."""
    receipt = "rt-" + uid()
    client.send_frame("SEND", {"destination": f"/topic/{uid()}", "receipt": receipt}, b"")
    frame = client.recv_until("RECEIPT", timeout)
    assert frame.command == "RECEIPT" and frame.headers["receipt-id"] == receipt, frame


def messages(client, n: int, timeout: float = 10.0) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        f = client.recv_frame(max(0.001, deadline - time.monotonic()))
        assert f.command == "MESSAGE", f
        out.append(f)
    return out


def config_args(tmp_path, text: str) -> list[str]:
    path = tmp_path / f"metrics-{uid()}.toml"
    path.write_text(text)
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def msrv(tmp_path_factory):
    """A server shared by this module's tests that only read gauges or compare their own queues."""
    srv = start_or_fail(StarlingServer(tmp_path_factory.mktemp("starling-metrics")))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _msrv_still_alive(request):
    """After each test that used the module's server, check that it did not crash."""
    yield
    assert_still_alive(request, "msrv", "the module's starling server")


# --------------------------------------------------------------------------------------------------
# 1. Format
# --------------------------------------------------------------------------------------------------


def test_parser_handles_escapes_and_rejects_garbage():
    m = Metrics('# HELP x_total a "help"\n# TYPE x_total counter\n'
                'x_total{a="q\\"uo\\\\te\\nnl",b="{,}="} 3\nx_total 1.5e3 1700000000\n')
    assert m.get("x_total", a='q"uo\\te\nnl', b="{,}=") == 3
    assert m.get("x_total") == 1500
    for bad in ['x{a="1} 2', 'x{a=1} 2', "x 1 2 3", 'x{a="\\q"} 1', "x", 'x{a="1"}2', "x abc",
                'x{a="1",a="2"} 1', "x 1\nx 2"]:
        with pytest.raises(ParseError):
            Metrics(bad)


def test_format_of_a_fresh_server(own_server):
    """Every line parses; every sample belongs to a family with a `# TYPE`; counters end in `_total`; histogram
    buckets are in increasing `le` order, cumulative, end with `+Inf` equal to `_count`; the content type; every
    documented series exists from the first scrape, the counters at 0."""
    srv = own_server()
    status, headers, body = scrape_raw(srv)
    assert status == 200
    assert headers.get("content-type") == CONTENT_TYPE
    m = Metrics(body.decode("utf-8"))
    assert m.samples, "no samples"
    for name, labels in m.order:
        family = m.family(name)
        assert family is not None, f"sample {name} has no # TYPE line"
        assert family.startswith("starling_"), name
        if m.types[family] == "counter":
            assert family.endswith("_total"), f"counter {family} does not end in _total"
            assert m.samples[(name, labels)] == 0, f"counter {name}{dict(labels)} is not 0 on a fresh server"
        if m.types[family] == "histogram" and name.endswith("_bucket"):
            assert "le" in dict(labels), f"bucket without le: {name}{dict(labels)}"
    for family, kind in m.types.items():
        assert any(m.family(n) == family for n, _ in m.order), f"# TYPE {family} without samples"
        if kind == "histogram":
            buckets, total, count = m.histogram(family)
            les = [le for le, _ in buckets]
            assert les == sorted(les) and len(set(les)) == len(les), f"{family} le not increasing: {les}"
            assert les[-1] == math.inf, f"{family} has no +Inf bucket"
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{family} buckets not cumulative: {counts}"
            assert counts[-1] == count, f"{family} +Inf bucket {counts[-1]} != _count {count}"
            assert total >= 0
    expected_types = {
        "starling_messages_received_total": "counter", "starling_messages_delivered_total": "counter",
        "starling_network_bytes_total": "counter", "starling_websocket_payload_bytes_total": "counter",
        "starling_websocket_messages_total": "counter", "starling_deliveries_skipped_total": "counter",
        "starling_connections_opened_total": "counter", "starling_errors_total": "counter",
        "starling_limits_hit_total": "counter", "starling_auth_failures_total": "counter",
        "starling_connections": "gauge", "starling_sessions": "gauge", "starling_subscriptions": "gauge",
        "starling_destinations": "gauge", "starling_queue_messages_ready": "gauge",
        "starling_queue_messages_unacked": "gauge", "starling_process_resident_memory_bytes": "gauge",
        "starling_process_open_fds": "gauge", "starling_process_cpu_seconds": "gauge",
        "starling_delivery_latency_seconds": "histogram", "starling_event_loop_lag_seconds": "histogram",
        "starling_store_batch_operations": "histogram", "starling_store_commit_seconds": "histogram",
    }
    for family, kind in expected_types.items():
        assert m.types.get(family) == kind, f"{family}: type {m.types.get(family)!r}, expected {kind}"

    def check_labels(name, keys, required, allowed=None):
        """Every series of ``name`` has exactly the label names ``keys``; the label values include every one of
        ``required`` and (if given) come from ``allowed``."""
        series = m.series(name)
        assert all(set(s) == set(keys) for s in series), f"{name}: label names {series}"
        values = [tuple(s[k] for k in keys) for s in series]
        missing = set(required) - set(values)
        assert not missing, f"{name} lacks series {sorted(missing)}"
        unknown = set(values) - set(allowed if allowed is not None else required)
        assert not unknown, f"{name} has unexpected series {sorted(unknown)}"

    check_labels("starling_messages_received_total", ["kind"], [(k,) for k in RECEIVED_KINDS])
    check_labels("starling_messages_delivered_total", ["kind"], [(k,) for k in DELIVERED_KINDS])
    check_labels("starling_network_bytes_total", ["transport", "direction"],
                 [(t, d) for t in ("tcp", "ws") for d in ("in", "out")])
    for name in ("starling_websocket_payload_bytes_total", "starling_websocket_messages_total"):
        check_labels(name, ["direction"], [("in",), ("out",)])
    check_labels("starling_deliveries_skipped_total", ["policy"], [("conflate",), ("drop-oldest",)])
    for name in ("starling_connections_opened_total", "starling_connections"):
        check_labels(name, ["transport", "tls", "deflate"], CONNECTION_KINDS)
    # Reasons and limits grow with the server (docs/metrics.md adds max-message-size): every documented one must be
    # there, and any other must still be a fixed word, never something a client sent.
    for name, label, required in (("starling_errors_total", "reason", ERROR_REASONS),
                                  ("starling_limits_hit_total", "limit", LIMITS)):
        values = [s[label] for s in m.series(name)]
        check_labels(name, [label], [(v,) for v in required], [(v,) for v in values])
        assert all(re.fullmatch(r"[a-z][a-z_-]*", v) for v in values) and len(values) < 2 * len(required), values
    check_labels("starling_destinations", ["kind"], [("queue",), ("subscribed",)])
    assert m.get("starling_auth_failures_total") == 0
    for gauge in ("starling_sessions", "starling_subscriptions", "starling_queue_messages_ready",
                  "starling_queue_messages_unacked"):
        assert m.get(gauge) == 0, gauge
    assert m.series("starling_queue_ready") == [], "a fresh server has no queues"
    assert m.get("starling_process_resident_memory_bytes") > 1 << 20
    assert m.get("starling_process_open_fds") >= 3
    assert m.get("starling_process_cpu_seconds") > 0
    for hist in ("starling_delivery_latency_seconds", "starling_store_batch_operations",
                 "starling_store_commit_seconds"):
        assert m.histogram(hist)[2] == 0, f"{hist} has observations on a fresh server"
    # The event loop lag probe runs every 250 ms per loop: within a second it has observed something.
    later = wait_metrics(srv, lambda x: x.histogram("starling_event_loop_lag_seconds")[2] >
                         m.histogram("starling_event_loop_lag_seconds")[2], "an event loop lag observation", 2.0)
    assert later.histogram("starling_event_loop_lag_seconds")[1] >= 0


def test_label_values_are_escaped(msrv):
    """A queue whose name holds a double quote and a backslash shows up in `starling_queue_ready{queue}` with that
    exact name, so label values are escaped as the format requires."""
    name = f'/queue/{uid()}"odd\\name'
    client = connected(RawTcpStomp(msrv.stomp_port))
    try:
        client.send_frame("SEND", {"destination": name, "receipt": "r"}, b"x")
        frame = client.recv_until("RECEIPT")
        assert frame.command == "RECEIPT", frame
        m = scrape(msrv)
        assert m.get("starling_queue_ready", queue=name) == 1, m.series("starling_queue_ready")
        client.send_frame("SUBSCRIBE", {"id": "q", "destination": name})
        assert client.recv_frame(5).command == "MESSAGE"
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# 2. Topic fan-out: message counts and exact bytes
# --------------------------------------------------------------------------------------------------


def test_topic_fanout_counts_and_bytes(own_server):
    """2 TCP and 2 WebSocket (no deflate) subscribers, one TCP publisher, M messages: received{topic} += M (+1 for
    the receipt round trip), delivered{topic} += 4*M, latency observations grow; the TCP bytes in and out are exactly
    what the TCP clients wrote and read; the WebSocket bytes out are exactly the frames the WebSocket clients got
    (header + payload per message), WebSocket bytes in are 0 (they sent nothing), and the WebSocket payload and
    message counters match."""
    srv = own_server()
    topic = f"/topic/fan.{uid()}"
    M = 25
    tcp_subs = [connected(CountingTcp(srv.stomp_port)) for _ in range(2)]
    ws_subs = [connected(CountingWs(srv.ws_url)) for _ in range(2)]
    pub = connected(CountingTcp(srv.stomp_port))
    clients = tcp_subs + ws_subs + [pub]
    try:
        for c in tcp_subs + ws_subs:
            subscribe(c, topic)
        tcp_clients = tcp_subs + [pub]
        marks_in = [c.bytes_in for c in tcp_clients]
        marks_out = [c.bytes_out for c in tcp_clients]
        ws_marks = [(len(c.sent_payloads), len(c.received_payloads)) for c in ws_subs]
        before = scrape(srv)

        for i in range(M):
            pub.send_frame("SEND", {"destination": topic, "x-seq": str(i)}, f"message {i} " + "x" * (i * 10))
        roundtrip(pub)
        for c in tcp_subs + ws_subs:
            got = messages(c, M)
            assert [int(f.headers["x-seq"]) for f in got] == list(range(M))
        after = scrape(srv)

        assert_deltas(before, after, "starling_messages_received_total", "kind", {"topic": M + 1})
        assert_deltas(before, after, "starling_messages_delivered_total", "kind", {"topic": 4 * M})
        lat = delta(before, after, "starling_delivery_latency_seconds_count")
        assert 1 <= lat <= 4 * M, f"delivery latency observations grew by {lat}, expected 1..{4 * M}"
        assert delta(before, after, "starling_delivery_latency_seconds_sum") > 0

        tcp_in = sum(c.bytes_out for c in tcp_clients) - sum(marks_out)
        tcp_out = sum(c.bytes_in for c in tcp_clients) - sum(marks_in)
        assert delta(before, after, "starling_network_bytes_total", transport="tcp", direction="in") == tcp_in
        assert delta(before, after, "starling_network_bytes_total", transport="tcp", direction="out") == tcp_out
        assert tcp_out > 2 * tcp_in - 200, "the two TCP subscribers got about twice what the publisher sent"

        payloads_out = [n for c, (_, r) in zip(ws_subs, ws_marks) for n in c.received_payloads[r:]]
        assert all(len(c.sent_payloads) == s for c, (s, _) in zip(ws_subs, ws_marks)), "WS clients sent nothing"
        assert delta(before, after, "starling_network_bytes_total", transport="ws", direction="out") == \
            sum(ws_server_frame_size(n) for n in payloads_out)
        assert delta(before, after, "starling_network_bytes_total", transport="ws", direction="in") == 0
        assert delta(before, after, "starling_websocket_payload_bytes_total", direction="out") == sum(payloads_out)
        assert delta(before, after, "starling_websocket_payload_bytes_total", direction="in") == 0
        assert delta(before, after, "starling_websocket_messages_total", direction="out") == len(payloads_out)
        assert delta(before, after, "starling_websocket_messages_total", direction="in") == 0

        # WebSocket bytes in: one SEND from a WebSocket client, exactly its frame.
        before = scrape(srv)
        ws_subs[0].send_frame("SEND", {"destination": topic, "receipt": "w"}, b"from ws")
        assert ws_subs[0].recv_until("RECEIPT").headers["receipt-id"] == "w"
        for c in tcp_subs + ws_subs:
            assert messages(c, 1)[0].body == b"from ws"
        after = scrape(srv)
        sent = ws_subs[0].sent_payloads[-1]
        assert delta(before, after, "starling_network_bytes_total", transport="ws", direction="in") == \
            ws_client_frame_size(sent)
        assert delta(before, after, "starling_websocket_payload_bytes_total", direction="in") == sent
        assert delta(before, after, "starling_websocket_messages_total", direction="in") == 1
        assert_deltas(before, after, "starling_messages_received_total", "kind", {"topic": 1})
        assert_deltas(before, after, "starling_messages_delivered_total", "kind", {"topic": 4})
    finally:
        for c in clients:
            c.close()


def test_received_by_destination_kind(own_server):
    """One SEND to each kind of destination: each counts under its own kind."""
    srv = own_server()
    client = connected(RawTcpStomp(srv.stomp_port))
    try:
        before = scrape(srv)
        destinations = {"topic": f"/topic/{uid()}", "queue": f"/queue/{uid()}", "room": f"/room/{uid()}"}
        for kind, destination in destinations.items():
            client.send_frame("SEND", {"destination": destination, "receipt": kind}, b"x")
            frame = client.recv_until("RECEIPT")
            assert frame.command == "RECEIPT", (kind, frame)
        after = scrape(srv)
        assert_deltas(before, after, "starling_messages_received_total", "kind", {"topic": 1, "queue": 1, "room": 1})
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# 3. Queues
# --------------------------------------------------------------------------------------------------


def test_queue_depth_unacked_and_deliveries(msrv):
    srv = msrv
    queue = f"/queue/{uid()}"
    K = 7
    producer = connected(RawTcpStomp(srv.stomp_port))
    consumer = connected(RawTcpStomp(srv.stomp_port))
    try:
        before = scrape(srv)
        for i in range(K):
            producer.send_frame("SEND", {"destination": queue, "receipt": f"r{i}"}, f"job {i}")
            assert producer.recv_until("RECEIPT").headers["receipt-id"] == f"r{i}"
        m = scrape(srv)
        assert m.get("starling_queue_ready", queue=queue) == K
        assert m.get("starling_queue_unacked", queue=queue) == 0
        assert m.get("starling_queue_consumers", queue=queue) == 0
        assert delta(before, m, "starling_queue_messages_ready") == K
        assert delta(before, m, "starling_queue_messages_unacked") == 0
        assert delta(before, m, "starling_destinations", kind="queue") == 1
        assert_deltas(before, m, "starling_messages_received_total", "kind", {"queue": K})
        assert_deltas(before, m, "starling_messages_delivered_total", "kind", {})

        subscribe(consumer, queue, "q", ack="client-individual")
        got = messages(consumer, K)
        m2 = wait_metrics(srv, lambda x: x.get("starling_queue_unacked", queue=queue) == K, "unacked == K")
        assert m2.get("starling_queue_ready", queue=queue) == 0
        assert m2.get("starling_queue_consumers", queue=queue) == 1
        assert delta(before, m2, "starling_queue_messages_ready") == 0
        assert delta(before, m2, "starling_queue_messages_unacked") == K
        assert_deltas(m, m2, "starling_messages_delivered_total", "kind", {"queue": K})

        for f in got[:3]:
            consumer.send_frame("ACK", {"id": f.headers["ack"]})
        roundtrip(consumer)
        m3 = scrape(srv)
        assert m3.get("starling_queue_unacked", queue=queue) == K - 3
        assert delta(before, m3, "starling_queue_messages_unacked") == K - 3
        for f in got[3:]:
            consumer.send_frame("ACK", {"id": f.headers["ack"]})
        roundtrip(consumer)
        m4 = scrape(srv)
        assert m4.get("starling_queue_unacked", queue=queue) == 0
        assert m4.get("starling_queue_ready", queue=queue) == 0
        assert delta(before, m4, "starling_queue_messages_unacked") == 0
        assert delta(before, m4, "starling_queue_messages_ready") == 0
        assert_deltas(before, m4, "starling_messages_delivered_total", "kind", {"queue": K})
    finally:
        producer.close()
        consumer.close()


# --------------------------------------------------------------------------------------------------
# 4. The store
# --------------------------------------------------------------------------------------------------


def test_persistent_sends_are_group_commits(msrv):
    """`persistent:true` SENDs to a queue (each waiting for its receipt, so each is its own commit): the store
    histograms count at least one commit and at least one operation per message; non-persistent SENDs commit
    nothing."""
    srv = msrv
    queue = f"/queue/{uid()}"
    client = connected(RawTcpStomp(srv.stomp_port))
    try:
        before = scrape(srv)
        for i in range(3):
            client.send_frame("SEND", {"destination": queue, "receipt": f"t{i}"}, b"transient")
            assert client.recv_until("RECEIPT").headers["receipt-id"] == f"t{i}"
        middle = scrape(srv)
        assert delta(before, middle, "starling_store_commit_seconds_count") == 0
        assert delta(before, middle, "starling_store_batch_operations_count") == 0

        N = 5
        for i in range(N):
            client.send_frame("SEND", {"destination": queue, "persistent": "true", "receipt": f"p{i}"}, f"durable {i}")
            assert client.recv_until("RECEIPT").headers["receipt-id"] == f"p{i}"
        after = scrape(srv)
        commits = delta(middle, after, "starling_store_commit_seconds_count")
        batches = delta(middle, after, "starling_store_batch_operations_count")
        assert 1 <= commits <= N, f"{commits} commits for {N} persistent sends"
        assert batches == commits, "one batch size observation per commit"
        assert delta(middle, after, "starling_store_batch_operations_sum") >= N, "at least one insert per message"
        assert delta(middle, after, "starling_store_commit_seconds_sum") > 0
        for hist in ("starling_store_commit_seconds", "starling_store_batch_operations"):
            buckets, _, count = after.histogram(hist)
            assert buckets[-1][1] == count
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# 5. Connections and sessions
# --------------------------------------------------------------------------------------------------


def test_connection_and_session_gauges(msrv):
    """Two TCP connections (one never sends CONNECT), a WebSocket without and one with permessage-deflate: the
    `connections` gauges and `connections_opened_total` move under exactly their labels, `sessions` counts only the
    three past CONNECTED; everything goes back down when they close."""
    srv = msrv
    # Earlier tests' clients are closed; wait until the server has seen them go.
    def idle(m):
        return m.get("starling_sessions") == 0 and \
            sum(m.get("starling_connections", **labels) for labels in m.series("starling_connections")) == 0

    base = wait_metrics(srv, idle, "no connection left over from earlier tests")
    tcp_a = connected(RawTcpStomp(srv.stomp_port))
    tcp_b = RawTcpStomp(srv.stomp_port)  # connected at the TCP level only
    ws_plain = connected(RawWsStomp(srv.ws_url, compression=None))
    ws_deflate = connected(RawWsStomp(srv.ws_url, compression="deflate"))
    clients = [tcp_a, tcp_b, ws_plain, ws_deflate]
    try:
        assert "permessage-deflate" in (ws_deflate.ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        assert not ws_plain.ws.response.headers.get("Sec-WebSocket-Extensions")
        expected = {("tcp", "false", "false"): 2, ("ws", "false", "false"): 1, ("ws", "false", "true"): 1}

        def conn_deltas(m, name):
            out = {}
            for labels in m.series(name):
                assert set(labels) == {"transport", "tls", "deflate"}, labels
                key = (labels["transport"], labels["tls"], labels["deflate"])
                out[key] = delta(base, m, name, **labels)
            return out

        m = wait_metrics(srv, lambda x: conn_deltas(x, "starling_connections").get(("tcp", "false", "false")) == 2,
                         "two TCP connections")
        want = {k: expected.get(k, 0) for k in CONNECTION_KINDS}
        assert conn_deltas(m, "starling_connections") == want
        assert conn_deltas(m, "starling_connections_opened_total") == want
        assert delta(base, m, "starling_sessions") == 3

        for c in clients:
            c.close()
        m = wait_metrics(srv, lambda x: all(v == 0 for v in conn_deltas(x, "starling_connections").values())
                         and delta(base, x, "starling_sessions") == 0, "the gauges back at their starting values")
        assert conn_deltas(m, "starling_connections_opened_total") == want, "opened counters do not go down"
    finally:
        for c in clients:
            c.close()


def test_subscription_and_destination_gauges(own_server):
    """Three topic subscriptions (two on one pattern) and a room subscription: `subscriptions` +4,
    `destinations{subscribed}` +3 distinct patterns; queue subscriptions are not counted there; back down after
    UNSUBSCRIBE and close."""
    srv = own_server()
    a = connected(RawTcpStomp(srv.stomp_port))
    b = connected(RawWsStomp(srv.ws_url))
    try:
        base = scrape(srv)
        t1, t2, room = f"/topic/{uid()}.*", f"/topic/{uid()}", f"/room/{uid()}"
        subscribe(a, t1, "1")
        subscribe(b, t1, "1")
        subscribe(a, t2, "2")
        subscribe(b, room, "3")
        subscribe(a, f"/queue/{uid()}", "4")
        m = scrape(srv)
        assert delta(base, m, "starling_subscriptions") == 4
        assert delta(base, m, "starling_destinations", kind="subscribed") == 3
        assert delta(base, m, "starling_destinations", kind="queue") == 1
        a.send_frame("UNSUBSCRIBE", {"id": "2"})
        roundtrip(a)
        m = scrape(srv)
        assert delta(base, m, "starling_subscriptions") == 3
        assert delta(base, m, "starling_destinations", kind="subscribed") == 2
        a.close()
        b.close()
        wait_metrics(srv, lambda x: delta(base, x, "starling_subscriptions") == 0
                     and delta(base, x, "starling_destinations", kind="subscribed") == 0, "subscriptions gone")
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------------------------------
# 6. WebSocket payload vs wire with permessage-deflate
# --------------------------------------------------------------------------------------------------


def test_deflate_payload_bytes_exceed_wire_bytes(own_server):
    srv = own_server()
    topic = f"/topic/{uid()}"
    ws = connected(CountingWs(srv.ws_url, compression="deflate"))
    pub = connected(RawTcpStomp(srv.stomp_port))
    try:
        assert "permessage-deflate" in (ws.ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        subscribe(ws, topic)
        body = ("the quick brown fox jumps over the lazy dog " * 3000).encode()  # 132 KB, very compressible
        before = scrape(srv)
        pub.send_frame("SEND", {"destination": topic}, body)
        assert messages(ws, 1)[0].body == body
        after = scrape(srv)
        payload_out = delta(before, after, "starling_websocket_payload_bytes_total", direction="out")
        wire_out = delta(before, after, "starling_network_bytes_total", transport="ws", direction="out")
        assert payload_out == ws.received_payloads[-1], "payload bytes out are the inflated message"
        assert payload_out > len(body)
        assert 0 < wire_out < payload_out / 10, f"wire {wire_out} vs payload {payload_out}: not compressed"
        assert delta(before, after, "starling_websocket_messages_total", direction="out") == 1

        # Inbound: a large compressible SEND from the WebSocket client.
        before = scrape(srv)
        ws.send_frame("SEND", {"destination": f"/topic/{uid()}", "receipt": "big"}, body)
        assert ws.recv_until("RECEIPT").headers["receipt-id"] == "big"
        after = scrape(srv)
        payload_in = delta(before, after, "starling_websocket_payload_bytes_total", direction="in")
        wire_in = delta(before, after, "starling_network_bytes_total", transport="ws", direction="in")
        assert payload_in == ws.sent_payloads[-1]
        assert 0 < wire_in < payload_in / 10, f"wire {wire_in} vs payload {payload_in}: not compressed"
        assert delta(before, after, "starling_websocket_messages_total", direction="in") == 1
    finally:
        ws.close()
        pub.close()


# --------------------------------------------------------------------------------------------------
# 7. Errors and limits
# --------------------------------------------------------------------------------------------------


def test_protocol_error(msrv):
    client = connected(RawTcpStomp(msrv.stomp_port))
    try:
        before = scrape(msrv)
        client.send_raw(b"BOGUS\n\n\x00")
        frame = client.recv_frame(5)
        assert frame.command == "ERROR", frame
        client.wait_closed(5)
        after = scrape(msrv)
        assert_deltas(before, after, "starling_errors_total", "reason", {"protocol": 1})
        assert_deltas(before, after, "starling_limits_hit_total", "limit", {})
        assert delta(before, after, "starling_auth_failures_total") == 0
    finally:
        client.close()


def test_frame_limits_and_origins(own_server):
    """Body over max-body-size, too many headers, one subscription too many, a CONNECT not sent in time, a
    disallowed Origin: each is counted once, under its own reason and limit and nowhere else."""
    srv = own_server(["--set", "max-body-size=1024", "--set", "max-subscriptions=3", "--set", "connect-timeout-ms=300",
                      "--set", "allowed-origins=https://ok.example"])

    def check(action, errors: dict, limits: dict):
        before = scrape(srv)
        action()
        after = scrape(srv)
        assert_deltas(before, after, "starling_errors_total", "reason", errors)
        assert_deltas(before, after, "starling_limits_hit_total", "limit", limits)

    def expect_error(client, text):
        frame = client.recv_until("ERROR", 5)
        assert frame.command == "ERROR" and text in frame.headers.get("message", ""), frame
        client.wait_closed(5)
        client.close()

    def big_body():
        c = connected(RawTcpStomp(srv.stomp_port))
        c.send_frame("SEND", {"destination": f"/topic/{uid()}"}, b"x" * 2000)
        expect_error(c, "")

    def many_headers():
        c = connected(RawTcpStomp(srv.stomp_port))
        c.send_frame("SEND", [("destination", f"/topic/{uid()}")] + [(f"h{i}", "v") for i in range(80)], b"x")
        expect_error(c, "")

    def many_subscriptions():
        c = connected(RawTcpStomp(srv.stomp_port))
        for i in range(3):
            subscribe(c, f"/topic/{uid()}", str(i))
        c.send_frame("SUBSCRIBE", {"id": "extra", "destination": f"/topic/{uid()}"})
        expect_error(c, "too many subscriptions")

    def no_connect():
        c = RawTcpStomp(srv.stomp_port)
        expect_error(c, "CONNECT")

    def origins():
        for origin, status in [("https://evil.example", 403), ("https://ok.example", 101),
                               ("https://evil2.example", 403)]:
            request = ws_handshake_request("/ws").replace(b"\r\n\r\n", f"\r\nOrigin: {origin}\r\n\r\n".encode())
            got, _, body, sock = http_request(srv.http_port, request)
            sock.close()
            assert got == status, (origin, got, body)

    check(big_body, {"limit": 1}, {"max-body-size": 1})
    check(many_headers, {"limit": 1}, {"max-header-count": 1})
    check(many_subscriptions, {"limit": 1}, {"max-subscriptions": 1})
    check(no_connect, {"limit": 1}, {"connect-timeout": 1})
    check(origins, {}, {"allowed-origins": 2})


def test_max_connections_per_ip(own_server):
    """max-connections-per-ip 2: three more STOMP connections and one HTTP request from the same address are refused,
    each counted once (scraped from 127.0.0.2, which has its own allowance)."""
    srv = own_server(["--set", "max-connections-per-ip=2"])
    before = scrape(srv, "127.0.0.2")
    held = [connected(RawTcpStomp(srv.stomp_port)) for _ in range(2)]
    try:
        for _ in range(3):
            refused = RawTcpStomp(srv.stomp_port)
            frame = refused.recv_frame(5)
            assert frame.command == "ERROR" and "max-connections-per-ip" in frame.headers.get("message", ""), frame
            refused.wait_closed(5)
            refused.close()
        status, _, body, sock = http_request(srv.http_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.close()
        assert status == 503, (status, body)
        after = scrape(srv, "127.0.0.2")
        assert_deltas(before, after, "starling_limits_hit_total", "limit", {"max-connections-per-ip": 4})
        # Refused before a session exists: no connection of any kind opened.
        assert sum(delta(before, after, "starling_connections_opened_total", transport=t, tls=s, deflate=d)
                   for t, s, d in CONNECTION_KINDS) == 2
    finally:
        for c in held:
            c.close()


def test_auth_failures(tmp_path, own_server):
    users = tmp_path / "users.txt"
    result = subprocess.run([starling_bin(), "passwd", str(users), "alice", "--iterations", "1000"],
                            input="s3cret\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    srv = own_server(config_args(tmp_path, f'[auth]\nusers-file = "{users}"\n'))

    def attempt(passcode):
        c = RawTcpStomp(srv.stomp_port)
        try:
            return c.connect(extra=[("login", "alice"), ("passcode", passcode)], timeout=10)
        finally:
            c.close()

    before = scrape(srv)
    assert attempt("s3cret").command == "CONNECTED"
    m1 = scrape(srv)
    assert delta(before, m1, "starling_auth_failures_total") == 0
    assert_deltas(before, m1, "starling_errors_total", "reason", {})
    frame = attempt("wrong")
    assert frame.command == "ERROR" and "authentication failed" in frame.headers["message"], frame
    m2 = scrape(srv)
    assert delta(m1, m2, "starling_auth_failures_total") == 1
    assert_deltas(m1, m2, "starling_errors_total", "reason", {"auth": 1})
    assert_deltas(m1, m2, "starling_limits_hit_total", "limit", {})
    # Four more failures reach the failed-login limit (5); the next attempt, even with the right passcode, is refused.
    for _ in range(4):
        assert attempt("wrong").command == "ERROR"
    frame = attempt("s3cret")
    assert frame.command == "ERROR" and "too many failed logins" in frame.headers["message"], frame
    m3 = scrape(srv)
    assert_deltas(m2, m3, "starling_errors_total", "reason", {"auth": 5})
    assert_deltas(m2, m3, "starling_limits_hit_total", "limit", {"failed-login-limit": 1})
    assert delta(m2, m3, "starling_auth_failures_total") == 5


def test_frame_rate_limit(own_server):
    """max-frame-rate 100 and 160 frames written at once: reading pauses at least once (counted); nothing is
    lost."""
    srv = own_server(["--set", "max-frame-rate=100"])
    client = connected(RawTcpStomp(srv.stomp_port))
    try:
        before = scrape(srv)
        client.send_raw(b"".join(encode_frame("SEND", {"destination": f"/topic/{uid()}"}, b"x") for _ in range(160)))
        roundtrip(client, 10)
        after = scrape(srv)
        hits = by_label(before, after, "starling_limits_hit_total", "limit")
        assert hits.pop("max-frame-rate") >= 1
        assert all(v == 0 for v in hits.values()), hits
        assert_deltas(before, after, "starling_messages_received_total", "kind", {"topic": 161})
        assert_deltas(before, after, "starling_errors_total", "reason", {})
    finally:
        client.close()


def publish_big(pub, destination: str, count: int, size: int, keys: list[str] | None = None) -> None:
    body = b"z" * size
    for i in range(count):
        headers = {"destination": destination, "x-seq": str(i)}
        if keys:
            headers["x-key"] = keys[i % len(keys)]
        pub.send_frame("SEND", headers, body)


def test_slow_consumer_disconnect(own_server, tmp_path):
    """A stalled subscriber under `slow-consumer = "disconnect"` and max-pending-bytes 64 KiB: once the socket
    buffers are full it is cut off: errors{slow_consumer} +1 and limits_hit{max-pending-bytes} +1, exactly once."""
    srv = own_server(["--set", "max-pending-bytes=65536", *config_args(
        tmp_path, '[[policy]]\nmatch = "/topic/slow.#"\nslow-consumer = "disconnect"\n')])
    topic = f"/topic/slow.{uid()}"
    stalled = connected(StalledTcp(srv.stomp_port))
    subscribe(stalled, topic)
    pub = connected(RawTcpStomp(srv.stomp_port, timeout=30))
    try:
        before = scrape(srv)
        publish_big(pub, topic, 250, 40_000)  # 10 MB: beyond the socket buffers (a few MB) and 64 KiB
        roundtrip(pub)
        after = wait_metrics(srv, lambda m: delta(before, m, "starling_errors_total", reason="slow_consumer") >= 1,
                             "the slow consumer's ERROR")
        time.sleep(0.2)  # anything counted twice would show by now
        after = scrape(srv)
        assert_deltas(before, after, "starling_errors_total", "reason", {"slow_consumer": 1})
        assert_deltas(before, after, "starling_limits_hit_total", "limit", {"max-pending-bytes": 1})
        assert_deltas(before, after, "starling_deliveries_skipped_total", "policy", {})
    finally:
        stalled.close()
        pub.close()


# --------------------------------------------------------------------------------------------------
# 8. Conflation and drop-oldest
# --------------------------------------------------------------------------------------------------


def read_until_last_of_each_key(client, keys: list[str], count: int, timeout: float = 30.0) -> list:
    """Read a formerly stalled subscriber until the last message of every key has arrived; the MESSAGEs read."""
    last = {k: max(i for i in range(count) if keys[i % len(keys)] == k) for k in keys}
    seen: dict[str, int] = {}
    frames = []
    deadline = time.monotonic() + timeout
    while any(seen.get(k) != last[k] for k in keys):
        f = client.recv_frame(max(0.001, deadline - time.monotonic()))
        assert f.command == "MESSAGE", f
        frames.append(f)
        seen[f.headers["x-key"]] = int(f.headers["x-seq"])
    return frames


def test_conflation_skips_are_counted(own_server, tmp_path):
    """On a conflate topic, 200 x 40 KB published over 8 x-keys to a stalled subscriber that then reads everything
    again (it gets the last message of every key): deliveries_skipped{conflate} grows by exactly 200 minus the
    MESSAGEs it got, once it has caught up. Then another stalled subscriber is closed while it holds conflated
    messages: the counter grows again (by at most 200)."""
    srv = own_server(config_args(tmp_path, '[[policy]]\nmatch = "/topic/cfl.#"\nslow-consumer = "conflate"\n'))
    topic = f"/topic/cfl.{uid()}"
    keys = [f"k{i}" for i in range(8)]
    count = 200
    drained = connected(StalledTcp(srv.stomp_port))
    subscribe(drained, topic)
    pub = connected(RawTcpStomp(srv.stomp_port, timeout=30))
    closed = None
    try:
        before = scrape(srv)
        publish_big(pub, topic, count, 40_000, keys)
        roundtrip(pub)
        got = len(read_until_last_of_each_key(drained, keys, count))
        roundtrip(drained)  # nothing else was pending for it
        assert got < count, "the stalled subscriber got every message: it never was slow"
        deadline = time.monotonic() + 5
        while True:
            after = scrape(srv)
            skipped = delta(before, after, "starling_deliveries_skipped_total", policy="conflate")
            if skipped >= count - got or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert skipped == count - got, f"{got} MESSAGEs of {count} arrived, {skipped} counted as skipped"
        assert delta(before, after, "starling_deliveries_skipped_total", policy="drop-oldest") == 0

        drained.close()
        closed = connected(StalledTcp(srv.stomp_port))
        subscribe(closed, topic)
        before = wait_metrics(srv, lambda m: delta(after, m, "starling_sessions") == 0, "the drained client gone")
        publish_big(pub, topic, count, 40_000, keys)
        roundtrip(pub)
        closed.close()
        after = wait_metrics(srv, lambda m: delta(before, m, "starling_sessions") == -1, "the stalled client gone")
        skipped = delta(before, after, "starling_deliveries_skipped_total", policy="conflate")
        assert 0 < skipped <= count, f"{skipped} skips counted for a subscriber closed while conflating"
    finally:
        drained.close()
        if closed:
            closed.close()
        pub.close()


def drop_oldest_run(own_server, tmp_path, count: int = 200):
    """A stalled subscriber on a drop-oldest topic (20 pending messages at most) reads again after ``count``
    messages of 40 KB: (before, after scrape, MESSAGEs it got, sum of their x-dropped)."""
    srv = own_server(config_args(tmp_path, '[[policy]]\nmatch = "/topic/dro.#"\nslow-consumer = "drop-oldest"\n'
                                           'max-pending-messages = 20\n'))
    topic = f"/topic/dro.{uid()}"
    stalled = connected(StalledTcp(srv.stomp_port))
    subscribe(stalled, topic)
    pub = connected(RawTcpStomp(srv.stomp_port, timeout=30))
    try:
        before = scrape(srv)
        publish_big(pub, topic, count, 40_000)
        roundtrip(pub)
        frames = []
        deadline = time.monotonic() + 30
        while not frames or int(frames[-1].headers["x-seq"]) != count - 1:
            f = stalled.recv_frame(max(0.001, deadline - time.monotonic()))
            assert f.command == "MESSAGE", f
            frames.append(f)
        roundtrip(stalled)  # nothing else was pending for it
        dropped = sum(int(f.headers.get("x-dropped", 0)) for f in frames)
        assert dropped > 0, "nothing dropped: the subscriber was never slow"
        assert len(frames) + dropped == count
        after = wait_metrics(srv, lambda m: delta(before, m, "starling_deliveries_skipped_total",
                                                  policy="drop-oldest") >= dropped, "the drops counted")
        return before, after, frames, dropped
    finally:
        stalled.close()
        pub.close()


def test_drop_oldest_skips_match_x_dropped(own_server, tmp_path):
    """deliveries_skipped{drop-oldest} grows by exactly the sum of the `x-dropped` headers the subscriber saw."""
    before, after, frames, dropped = drop_oldest_run(own_server, tmp_path)
    assert_deltas(before, after, "starling_deliveries_skipped_total", "policy", {"drop-oldest": dropped})


def test_delivered_counts_only_messages_written_to_a_slow_subscriber(own_server, tmp_path):
    """`messages_delivered_total` counts MESSAGE frames written to subscribers: for a drop-oldest subscriber that read
    everything in the end (the only subscriber), exactly the MESSAGEs it got, not those dropped before writing."""
    before, after, frames, dropped = drop_oldest_run(own_server, tmp_path)
    delivered, written = delta(before, after, "starling_messages_delivered_total", kind="topic"), len(frames)
    assert delivered == written, \
        f"delivered{{topic}} +{delivered:.0f}; the only subscriber got {written} MESSAGEs, {dropped} were dropped"


# --------------------------------------------------------------------------------------------------
# 9. Label cardinality
# --------------------------------------------------------------------------------------------------


def test_only_the_50_deepest_queues_are_labelled(own_server):
    """80 queues with depths 1..80: exactly the 50 deepest (31..80) have `queue_ready`, `queue_unacked` and
    `queue_consumers` series; after the 10 deepest are emptied by a consumer, the next scrape labels 21..70 and the
    emptied ones lose their series."""
    srv = own_server()
    prefix = f"/queue/card.{uid()}"
    names = {depth: f"{prefix}.{depth:02d}" for depth in range(1, 81)}
    client = connected(RawTcpStomp(srv.stomp_port))
    try:
        client.send_raw(b"".join(encode_frame("SEND", {"destination": names[d]}, b"m")
                                 for d in names for _ in range(d)))
        roundtrip(client)
        m = scrape(srv)
        assert m.get("starling_queue_messages_ready") == sum(range(1, 81))
        assert m.get("starling_destinations", kind="queue") == 80
        for family in ("starling_queue_ready", "starling_queue_unacked", "starling_queue_consumers"):
            labelled = {s["queue"] for s in m.series(family)}
            assert labelled == {names[d] for d in range(31, 81)}, \
                f"{family}: {len(labelled)} series, missing {sorted({names[d] for d in range(31, 81)} - labelled)}"
        assert all(m.get("starling_queue_ready", queue=names[d]) == d for d in range(31, 81))

        for d in range(71, 81):
            subscribe(client, names[d], f"c{d}")
            got = messages(client, d)
            assert {f.headers["destination"] for f in got} == {names[d]}
            client.send_frame("UNSUBSCRIBE", {"id": f"c{d}"})
        roundtrip(client)
        m = wait_metrics(srv, lambda x: x.get("starling_queue_messages_ready") == sum(range(1, 71)),
                         "the 10 deepest queues emptied")
        for family in ("starling_queue_ready", "starling_queue_unacked", "starling_queue_consumers"):
            labelled = {s["queue"] for s in m.series(family)}
            assert labelled == {names[d] for d in range(21, 71)}, \
                f"{family}: extra {sorted(labelled - {names[d] for d in range(21, 71)})}"
        assert all(m.get("starling_queue_ready", queue=names[d]) == d for d in range(21, 71))
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# 10. Scraping under load
# --------------------------------------------------------------------------------------------------


def test_scraping_under_load_does_not_disturb_delivery(msrv):
    """A publisher sends batches of 50 messages for as long as 20 scrapes take (at least 2000, at most 20000, at most
    about 5000 a second): every message arrives in order; received{topic} never goes down from scrape to scrape, some
    scrapes saw the publisher half way, and it ends exactly as many (+1 receipt round trip) higher. (A scrape waits for
    every event loop: on a machine short of CPU, the publisher's loop can keep one waiting for seconds.)"""
    srv = msrv
    topic = f"/topic/load.{uid()}"
    sub = connected(RawTcpStomp(srv.stomp_port))
    pub = connected(RawTcpStomp(srv.stomp_port))
    try:
        subscribe(sub, topic)
        before = scrape(srv)
        failure = []
        sent = [0]
        scraping_done = threading.Event()

        def publish():
            try:
                while (not scraping_done.is_set() or sent[0] < 2000) and sent[0] < 20000:
                    n = sent[0]
                    pub.send_raw(b"".join(encode_frame("SEND", {"destination": topic, "x-seq": str(j)}, b"payload")
                                          for j in range(n, n + 50)))
                    sent[0] = n + 50
                    time.sleep(0.01)  # at most about 5000 messages a second
                roundtrip(pub)
            except BaseException as e:  # noqa: BLE001
                failure.append(e)

        received = []

        def read():
            try:
                deadline = time.monotonic() + 30
                while thread.is_alive() or len(received) < sent[0]:
                    assert time.monotonic() < deadline, f"{len(received)} of {sent[0]} messages within 30 s"
                    try:
                        frame = sub.recv_frame(0.2)
                    except TimeoutError:
                        continue
                    assert frame.command == "MESSAGE", frame
                    received.append(frame)
            except BaseException as e:  # noqa: BLE001
                failure.append(e)

        thread = threading.Thread(target=publish, daemon=True)
        reader = threading.Thread(target=read, daemon=True)
        thread.start()
        reader.start()
        values = []
        for _ in range(20):
            values.append(scrape(srv, timeout=30).get("starling_messages_received_total", kind="topic") -
                          before.get("starling_messages_received_total", kind="topic"))
        scraping_done.set()
        thread.join(30)
        reader.join(30)
        assert not failure, failure
        count = sent[0]
        assert [int(f.headers["x-seq"]) for f in received] == list(range(count))
        assert values == sorted(values), f"received{{topic}} went down between scrapes: {values}"
        halfway = {v for v in values if 0 < v < count}
        assert len(halfway) >= 2, f"the scrapes did not run while the publisher sent: {values}"
        after = scrape(srv)
        assert delta(before, after, "starling_messages_received_total", kind="topic") == count + 1
        assert delta(before, after, "starling_messages_delivered_total", kind="topic") == count
    finally:
        sub.close()
        pub.close()
