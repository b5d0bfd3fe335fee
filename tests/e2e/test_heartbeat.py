"""Heart-beating (STOMP 1.1+): the server sends at the negotiated rate and drops clients that go silent."""

from __future__ import annotations

import time

import pytest

from e2e_helpers import subscribe_sync, uid

CLIENT_WANTS_MS = 300


def _hb(frame):
    hb = frame.headers.get("heart-beat")
    assert hb, f"CONNECTED has no heart-beat header: {frame!r}"
    sx, sy = (int(x) for x in hb.split(","))
    return sx, sy


def _client(kind, raw_tcp, raw_ws):
    return raw_tcp() if kind == "tcp" else raw_ws()


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_server_sends_heartbeats_at_negotiated_rate(raw_tcp, raw_ws, kind):
    """A client asking for heart-beats every 300 ms (heart-beat:0,300) receives EOL heart-beats at least every
    max(sx, 300) ms (with 50% jitter tolerance), where sx is the server's CONNECTED value."""
    c = _client(kind, raw_tcp, raw_ws)
    f = c.connect("1.2", heart_beat=f"0,{CLIENT_WANTS_MS}")
    assert f.command == "CONNECTED", f
    sx, _ = _hb(f)
    assert sx > 0, f"server announces it cannot send heart-beats (heart-beat: {f.headers['heart-beat']})"
    interval = max(sx, CLIENT_WANTS_MS) / 1000.0
    assert interval <= 10, f"negotiated server->client interval {interval}s is unreasonably long"
    start = time.monotonic()
    duration = max(4 * interval, 1.5)
    frames = c.drain(duration)
    assert not frames, f"unexpected frames: {frames}"
    assert not c.closed, "server closed the connection of a client that only receives"
    times = [start] + [t for t in c.parser.heartbeat_times if t >= start] + [time.monotonic()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    beats = len(times) - 2
    assert beats >= int(duration / interval) - 1, (
        f"only {beats} heart-beats in {duration:.2f}s at a negotiated interval of {interval:.3f}s")
    assert max(gaps) <= interval * 1.5 + 0.15, (
        f"gap of {max(gaps):.3f}s between heart-beats, negotiated {interval:.3f}s; gaps={gaps}")


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_no_heartbeats_when_not_requested(raw_tcp, raw_ws, kind):
    """A client that says heart-beat:0,0 receives no heart-beats and is not disconnected for being silent."""
    c = _client(kind, raw_tcp, raw_ws)
    f = c.connect("1.2", heart_beat="0,0")
    assert f.command == "CONNECTED", f
    start = time.monotonic()
    assert c.drain(1.2) == []
    assert not c.closed
    assert [t for t in c.parser.heartbeat_times if t >= start] == []
    assert c.receipt_roundtrip().command == "RECEIPT"


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_silent_client_is_disconnected(raw_tcp, raw_ws, kind):
    """A client that promised heart-beats every 300 ms (heart-beat:300,0) and then goes silent is closed by
    the server after the negotiated interval max(300, sy) plus a grace margin, and not before that interval."""
    c = _client(kind, raw_tcp, raw_ws)
    f = c.connect("1.2", heart_beat=f"{CLIENT_WANTS_MS},0")
    assert f.command == "CONNECTED", f
    t0 = time.monotonic()
    _, sy = _hb(f)
    assert sy > 0, (
        f"server does not ask for client heart-beats (heart-beat: {f.headers['heart-beat']}), "
        f"so a silent client is never detected")
    interval = max(sy, CLIENT_WANTS_MS) / 1000.0
    assert interval <= 10, f"negotiated client->server interval {interval}s is unreasonably long"
    limit = interval + max(2 * interval, 3.0)
    try:
        frames = c.wait_closed(limit)
    except TimeoutError:
        pytest.fail(f"silent client still connected {limit:.1f}s after CONNECTED "
                    f"(negotiated interval {interval:.3f}s)")
    elapsed = time.monotonic() - t0
    assert elapsed >= interval * 0.9, f"closed after {elapsed:.3f}s, before the negotiated {interval:.3f}s"
    assert all(fr.command == "ERROR" for fr in frames), frames


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_heartbeating_client_stays_connected(raw_tcp, raw_ws, kind):
    """A client that keeps sending EOL heart-beats at its promised rate stays connected well past the interval."""
    c = _client(kind, raw_tcp, raw_ws)
    f = c.connect("1.2", heart_beat=f"{CLIENT_WANTS_MS},0")
    assert f.command == "CONNECTED", f
    _, sy = _hb(f)
    interval = max(sy, CLIENT_WANTS_MS) / 1000.0 if sy else CLIENT_WANTS_MS / 1000.0
    end = time.monotonic() + min(max(3 * interval, 1.5), 12)
    while time.monotonic() < end:
        c.send_raw(b"\n")
        frames = c.drain(CLIENT_WANTS_MS / 2000.0)
        assert not frames, f"unexpected frames: {frames}"
        assert not c.closed, "server closed a client that was sending heart-beats"
    assert c.receipt_roundtrip().command == "RECEIPT"


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_stomp_py_heartbeats(stomp_client, kind):
    """stomp.py with heartbeats=(250, 250) gets server heart-beats, stays connected and still exchanges messages."""
    conn, col = stomp_client(kind, heartbeats=(250, 250))
    dest = f"/topic/{uid()}"
    subscribe_sync(conn, col, dest, "hb")
    sx, _ = _hb(col.connected[0])
    assert sx > 0, "server announces it cannot send heart-beats"
    wait = min(max(1.5, 3 * max(sx, 250) / 1000.0), 12)
    time.sleep(wait)
    assert conn.is_connected(), "stomp.py connection with heart-beats was dropped"
    assert col.heartbeats >= 2, f"stomp.py saw only {col.heartbeats} server heart-beats in {wait:.1f} s"
    conn.send(destination=dest, body="alive")
    assert col.wait_messages(1)[0].body == "alive"
    assert not col.disconnected and not col.errors
