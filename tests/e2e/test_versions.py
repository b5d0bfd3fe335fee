"""STOMP version negotiation (accept-version, WebSocket subprotocols) and the CONNECTED frame."""

from __future__ import annotations

import pytest

from e2e_helpers import uid


def test_connected_frame_headers(raw_tcp):
    """CONNECTED carries version, heart-beat (two integers), server and session headers."""
    c = raw_tcp()
    f = c.connect("1.2", heart_beat="0,0")
    assert f.command == "CONNECTED", f
    assert f.headers.get("version") == "1.2"
    hb = f.headers.get("heart-beat")
    assert hb is not None, f"CONNECTED lacks heart-beat: {f.headers}"
    sx, sy = hb.split(",")
    assert int(sx) >= 0 and int(sy) >= 0
    assert f.headers.get("server"), f"CONNECTED lacks server: {f.headers}"
    assert f.headers.get("session"), f"CONNECTED lacks session: {f.headers}"


def test_sessions_are_distinct(raw_tcp):
    """Two connections get different session ids."""
    a, b = raw_tcp(), raw_tcp()
    assert a.connect().headers["session"] != b.connect().headers["session"]


@pytest.mark.parametrize(
    "accept,expected",
    [("1.0", "1.0"), ("1.1", "1.1"), ("1.2", "1.2"), ("1.0,1.1,1.2", "1.2"), ("1.1,1.0", "1.1"),
     ("1.2,1.1", "1.2"), ("1.0,1.1", "1.1"), ("1.1,2.5", "1.1"), ("1.0,9.9", "1.0")],
)
@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
def test_accept_version_negotiation(raw_tcp, accept, expected, command):
    """The server picks the highest version in accept-version that it supports (CONNECT and STOMP)."""
    c = raw_tcp()
    f = c.connect(accept, command=command)
    assert f.command == "CONNECTED", f
    if expected == "1.0":
        assert f.headers.get("version", "1.0") == "1.0"
    else:
        assert f.headers.get("version") == expected
    # the session is usable: a receipt round trip works
    r = c.receipt_roundtrip()
    assert r.command == "RECEIPT", r


def test_no_accept_version_means_1_0(raw_tcp):
    """A CONNECT without accept-version is a STOMP 1.0 client: CONNECTED (version absent or 1.0), and it
    may SUBSCRIBE without an id and receive MESSAGEs."""
    c = raw_tcp()
    f = c.connect(None)
    assert f.command == "CONNECTED", f
    assert f.headers.get("version", "1.0") == "1.0"
    dest = f"/topic/{uid()}"
    c.send_frame("SUBSCRIBE", [("destination", dest), ("receipt", "s10")])
    r = c.recv_frame()
    assert r.command == "RECEIPT" and r.headers["receipt-id"] == "s10", r
    c.send_frame("SEND", [("destination", dest)], b"old school")
    m = c.recv_until("MESSAGE")
    assert m.command == "MESSAGE", m
    assert m.body == b"old school"
    assert m.headers["destination"] == dest


@pytest.mark.parametrize("accept", ["2.0", "0.9,3.1", "banana"])
def test_no_common_version_error_then_close(raw_tcp, accept):
    """With no common version the server answers ERROR (with a message and a version header listing what it
    supports) and closes the connection."""
    c = raw_tcp()
    f = c.connect(accept)
    assert f.command == "ERROR", f
    assert f.headers.get("message"), f"ERROR lacks message header: {f.headers}"
    assert "1.2" in f.headers.get("version", ""), f"ERROR should list supported versions: {f.headers}"
    c.wait_closed(5)


def test_no_common_version_over_websocket(raw_ws):
    """Over WebSocket too, no common version gives ERROR and the connection is closed."""
    c = raw_ws()
    f = c.connect("3.0")
    assert f.command == "ERROR", f
    c.wait_closed(5)


@pytest.mark.parametrize(
    "offered,expected",
    [(["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
     (["v12.stomp", "v11.stomp"], "v12.stomp"),
     (["v11.stomp", "v10.stomp"], "v11.stomp"),
     (["v10.stomp"], "v10.stomp"),
     (["mqtt", "v11.stomp"], "v11.stomp")],
)
def test_ws_subprotocol_highest_wins(raw_ws, offered, expected):
    """The WebSocket handshake selects the highest STOMP subprotocol offered, and STOMP works over it."""
    c = raw_ws(subprotocols=offered)
    assert c.ws.subprotocol == expected
    version = {"v10.stomp": "1.0", "v11.stomp": "1.1", "v12.stomp": "1.2"}[expected]
    f = c.connect(None if version == "1.0" else version)
    assert f.command == "CONNECTED", f
    assert f.headers.get("version", "1.0") == version
    assert c.receipt_roundtrip().command == "RECEIPT"


def test_ws_without_subprotocol_speaks_1_2(raw_ws):
    """A WebSocket client that offers no subprotocol still gets STOMP 1.2."""
    c = raw_ws(subprotocols=None)
    assert c.ws.subprotocol is None
    f = c.connect("1.0,1.1,1.2")
    assert f.command == "CONNECTED", f
    assert f.headers.get("version") == "1.2"


def test_stomp_py_versions(stomp_client):
    """stomp.py's 1.0, 1.1 and 1.2 connection classes each connect and get the version they asked for."""
    _, c10 = stomp_client("tcp10")
    _, c11 = stomp_client("tcp11")
    _, c12 = stomp_client("tcp12")
    assert c10.connected[0].headers.get("version", "1.0") == "1.0"
    assert c11.connected[0].headers.get("version") == "1.1"
    assert c12.connected[0].headers.get("version") == "1.2"



@pytest.mark.parametrize("subprotocol,expected", [("v11.stomp", "1.1"), ("v10.stomp", "1.0"), ("v12.stomp", "1.2")])
def test_ws_subprotocol_caps_the_version(raw_ws, subprotocol, expected):
    """A client that negotiated a subprotocol gets at most that STOMP version, whatever accept-version offers."""
    c = raw_ws(subprotocols=[subprotocol])
    assert c.ws.subprotocol == subprotocol
    f = c.connect("1.0,1.1,1.2")
    assert f.command == "CONNECTED", f
    assert f.headers.get("version") == expected
