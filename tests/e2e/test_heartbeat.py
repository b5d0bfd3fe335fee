"""Heart-beating (STOMP 1.1+): the server sends at the negotiated rate and drops clients that go silent.

The negotiated interval is max(client value, server value) and the server may announce a floor of several
seconds, so every scenario is started at once by a module fixture (in threads, on its own connections) and
each test then checks the outcome of its scenario. The wall time is that of the slowest scenario.
"""

from __future__ import annotations

import threading
import time

import pytest
import stomp

from e2e_helpers import Collector, RawTcpStomp, RawWsStomp, stomp_close, stomp_connect, subscribe_sync, uid

CLIENT_MS = 300
MAX_INTERVAL_S = 2.0  # refuse to wait for longer negotiated intervals than this


def _hb(frame):
    hb = frame.headers.get("heart-beat")
    assert hb, f"CONNECTED has no heart-beat header: {frame!r}"
    sx, sy = (int(x) for x in hb.split(","))
    return sx, sy


def _client(server, kind):
    return RawTcpStomp(server.stomp_port) if kind == "tcp" else RawWsStomp(server.ws_url)


def scenario_rate(server, kind):
    c = _client(server, kind)
    try:
        f = c.connect("1.2", heart_beat=f"0,{CLIENT_MS}")
        assert f.command == "CONNECTED", f
        sx, _ = _hb(f)
        assert sx > 0, f"server announces it cannot send heart-beats (heart-beat: {f.headers['heart-beat']})"
        interval = max(sx, CLIENT_MS) / 1000.0
        assert interval <= MAX_INTERVAL_S, f"negotiated server->client interval {interval}s is too long"
        start = time.monotonic()
        duration = max(2.5 * interval, 1.5)
        frames = c.drain(duration)
        assert not frames, f"unexpected frames: {frames}"
        assert not c.closed, "server closed the connection of a client that only receives"
        times = [start] + [t for t in c.parser.heartbeat_times if t >= start] + [time.monotonic()]
        gaps = [b - a for a, b in zip(times, times[1:])]
        beats = len(times) - 2
        assert beats >= max(1, int(duration / interval) - 1), (
            f"only {beats} heart-beats in {duration:.2f}s at a negotiated interval of {interval:.3f}s")
        assert max(gaps) <= interval * 1.5 + 0.15, (
            f"gap of {max(gaps):.3f}s between heart-beats, negotiated {interval:.3f}s; gaps={gaps}")
    finally:
        c.close()


def scenario_none(server, kind):
    c = _client(server, kind)
    try:
        f = c.connect("1.2", heart_beat="0,0")
        assert f.command == "CONNECTED", f
        start = time.monotonic()
        assert c.drain(1.2) == []
        assert not c.closed
        assert [t for t in c.parser.heartbeat_times if t >= start] == [], "heart-beats sent although not asked for"
        assert c.receipt_roundtrip().command == "RECEIPT"
    finally:
        c.close()


def scenario_silent(server, kind):
    c = _client(server, kind)
    try:
        f = c.connect("1.2", heart_beat=f"{CLIENT_MS},0")
        assert f.command == "CONNECTED", f
        t0 = time.monotonic()
        _, sy = _hb(f)
        assert sy > 0, (f"server does not ask for client heart-beats (heart-beat: {f.headers['heart-beat']}), "
                        f"so a silent client is never detected")
        interval = max(sy, CLIENT_MS) / 1000.0
        assert interval <= MAX_INTERVAL_S, f"negotiated client->server interval {interval}s is too long"
        limit = 3 * interval + 3.0  # interval plus a (generous) grace margin
        try:
            frames = c.wait_closed(limit)
        except TimeoutError:
            raise AssertionError(f"silent client still connected {limit:.1f}s after CONNECTED "
                                 f"(negotiated interval {interval:.3f}s)") from None
        elapsed = time.monotonic() - t0
        assert elapsed >= interval * 0.9, f"closed after {elapsed:.3f}s, before the negotiated {interval:.3f}s"
        assert all(fr.command == "ERROR" for fr in frames), frames
    finally:
        c.close()


def scenario_alive(server, kind):
    c = _client(server, kind)
    try:
        f = c.connect("1.2", heart_beat=f"{CLIENT_MS},0")
        assert f.command == "CONNECTED", f
        _, sy = _hb(f)
        interval = max(sy, CLIENT_MS) / 1000.0 if sy else CLIENT_MS / 1000.0
        end = time.monotonic() + min(max(3 * interval, 1.5), 3 * MAX_INTERVAL_S)
        while time.monotonic() < end:
            c.send_raw(b"\n")
            frames = c.drain(CLIENT_MS / 2000.0)
            assert not frames, f"unexpected frames: {frames}"
            assert not c.closed, "server closed a client that was sending heart-beats"
        assert c.receipt_roundtrip().command == "RECEIPT"
    finally:
        c.close()


def scenario_stomp_py(server, kind):
    if kind == "ws":
        conn = stomp.WSStompConnection([("127.0.0.1", server.http_port)], ws_path="/ws", heartbeats=(250, 250),
                                       reconnect_attempts_max=1)
    else:
        conn = stomp.Connection12([("127.0.0.1", server.stomp_port)], heartbeats=(250, 250), timeout=5,
                                  reconnect_attempts_max=1)
    col = Collector()
    try:
        stomp_connect(conn, col)
        dest = f"/topic/{uid()}"
        subscribe_sync(conn, col, dest, "hb")
        sx, _ = _hb(col.connected[0])
        assert sx > 0, "server announces it cannot send heart-beats"
        wait = min(max(1.5, 2.5 * max(sx, 250) / 1000.0), 2.5 * MAX_INTERVAL_S)
        time.sleep(wait)
        assert conn.is_connected(), "stomp.py connection with heart-beats was dropped"
        assert col.heartbeats >= 2, f"stomp.py saw only {col.heartbeats} server heart-beats in {wait:.1f} s"
        conn.send(destination=dest, body="alive")
        assert col.wait_messages(1)[0].body == "alive"
        assert not col.disconnected and not col.errors
    finally:
        stomp_close(conn)


SCENARIOS = {
    "rate": scenario_rate,
    "none": scenario_none,
    "silent": scenario_silent,
    "alive": scenario_alive,
    "stomp_py": scenario_stomp_py,
}


class Outcomes:
    def __init__(self):
        self.results: dict[tuple[str, str], BaseException | None] = {}

    def check(self, name, kind):
        key = (name, kind)
        assert key in self.results, f"scenario {key} did not finish"
        exc = self.results[key]
        if exc is not None:
            raise exc


@pytest.fixture(scope="module")
def hb(fast_heartbeat_server):
    """Runs every heart-beat scenario concurrently against a server with a 200 ms heart-beat floor."""
    server = fast_heartbeat_server
    out = Outcomes()
    lock = threading.Lock()

    def run(name, kind):
        try:
            SCENARIOS[name](server, kind)
            exc = None
        except BaseException as e:  # noqa: BLE001 - re-raised in the test
            exc = e
        with lock:
            out.results[(name, kind)] = exc

    threads = [threading.Thread(target=run, args=(n, k), daemon=True) for n in SCENARIOS for k in ("tcp", "ws")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3 * MAX_INTERVAL_S + 15
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return out


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_server_sends_heartbeats_at_negotiated_rate(hb, kind):
    """A client asking for heart-beats every 300 ms (heart-beat:0,300) receives EOL heart-beats at least every
    max(sx, 300) ms (with 50% jitter tolerance), where sx is the server's CONNECTED value."""
    hb.check("rate", kind)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_no_heartbeats_when_not_requested(hb, kind):
    """A client that says heart-beat:0,0 receives no heart-beats and is not disconnected for being silent."""
    hb.check("none", kind)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_silent_client_is_disconnected(hb, kind):
    """A client that promised heart-beats every 300 ms (heart-beat:300,0) and then goes silent is closed by
    the server after the negotiated interval max(300, sy) plus a grace margin (at most 3x + 3 s), and not
    before that interval."""
    hb.check("silent", kind)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_heartbeating_client_stays_connected(hb, kind):
    """A client that keeps sending EOL heart-beats at its promised rate stays connected for 3x the interval."""
    hb.check("alive", kind)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_stomp_py_heartbeats(hb, kind):
    """stomp.py with heartbeats=(250, 250) gets server heart-beats, stays connected and still exchanges messages."""
    hb.check("stomp_py", kind)
