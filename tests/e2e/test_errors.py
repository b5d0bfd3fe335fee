"""Protocol errors: an ERROR frame (message header, receipt-id when the bad frame had a receipt), then close."""

from __future__ import annotations

import time

import pytest

from e2e_helpers import Closed, subscribe_sync, uid


def _expect_error_then_close(client, receipt: str | None):
    try:
        f = client.recv_until("ERROR", timeout=5)
    except Closed:
        pytest.fail("connection closed without an ERROR frame")
    assert f.command == "ERROR", f
    assert f.headers.get("message"), f"ERROR lacks a message header: {f!r}"
    if receipt is not None:
        assert f.headers.get("receipt-id") == receipt, f"ERROR lacks receipt-id {receipt!r}: {f!r}"
    later = client.wait_closed(5)
    assert not any(x.command == "RECEIPT" for x in later), f"RECEIPT after ERROR: {later}"
    return f


BAD_FRAMES = {
    "unknown-command": ("FROBNICATE", [("destination", "/topic/x")]),
    "subscribe-no-destination": ("SUBSCRIBE", [("id", "1")]),
    "subscribe-no-id": ("SUBSCRIBE", [("destination", "/topic/x")]),
    "send-unknown-prefix": ("SEND", [("destination", "/nope/x")]),
    "send-no-destination": ("SEND", []),
    "unsubscribe-no-id": ("UNSUBSCRIBE", []),
}


@pytest.mark.parametrize("with_receipt", [True, False], ids=["receipt", "no-receipt"])
@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_protocol_error_tcp(raw_tcp, case, with_receipt):
    """A bad frame after CONNECT (unknown command, SUBSCRIBE without destination or id, SEND to an unknown
    prefix or without destination, UNSUBSCRIBE without id) gets ERROR (+ receipt-id) then the TCP connection closes."""
    c = raw_tcp()
    assert c.connect().command == "CONNECTED"
    command, headers = BAD_FRAMES[case]
    receipt = f"bad-{case}" if with_receipt else None
    if receipt:
        headers = headers + [("receipt", receipt)]
    c.send_frame(command, headers, b"body" if command in ("SEND", "FROBNICATE") else b"")
    _expect_error_then_close(c, receipt)


@pytest.mark.parametrize("case", ["unknown-command", "subscribe-no-id", "send-unknown-prefix"])
def test_protocol_error_websocket(raw_ws, case):
    """Over WebSocket a bad frame also gets ERROR with receipt-id, then the connection is closed."""
    c = raw_ws()
    assert c.connect().command == "CONNECTED"
    command, headers = BAD_FRAMES[case]
    c.send_frame(command, headers + [("receipt", "ws-bad")])
    _expect_error_then_close(c, "ws-bad")


@pytest.mark.parametrize("command,headers", [
    ("SEND", [("destination", "/topic/early")]),
    ("SUBSCRIBE", [("destination", "/topic/early"), ("id", "1")]),
])
def test_frame_before_connect(raw_tcp, command, headers):
    """A frame other than CONNECT/STOMP as the first frame gets ERROR (with receipt-id) and the connection closes."""
    c = raw_tcp()
    c.send_frame(command, headers + [("receipt", "pre")], b"x" if command == "SEND" else b"")
    _expect_error_then_close(c, "pre")


def test_frame_before_connect_websocket(raw_ws):
    """Over WebSocket a SEND before CONNECT also gets ERROR and the connection closes."""
    c = raw_ws()
    c.send_frame("SEND", [("destination", "/topic/early"), ("receipt", "pre-ws")], b"x")
    _expect_error_then_close(c, "pre-ws")


def test_garbage_instead_of_frame(raw_tcp):
    """Bytes that are not a STOMP frame at all get ERROR then close (and do not hurt the server)."""
    c = raw_tcp()
    c.send_raw(b"\x01\x02\x03 this is not stomp\n\n\x00")
    _expect_error_then_close(c, None)


def test_bad_content_length(raw_tcp):
    """A content-length that is not a number is a protocol error: ERROR then close."""
    c = raw_tcp()
    assert c.connect().command == "CONNECTED"
    c.send_raw(b"SEND\ndestination:/topic/x\ncontent-length:abc\nreceipt:cl\n\nhello\x00")
    _expect_error_then_close(c, "cl")


def test_error_does_not_affect_other_connections(stomp_client, raw_tcp):
    """A client that triggers a protocol error does not disturb another client's subscription."""
    good, col = stomp_client("tcp")
    dest = f"/topic/{uid()}"
    subscribe_sync(good, col, dest, "g")
    bad = raw_tcp()
    bad.connect()
    bad.send_frame("SEND", [("destination", "/nope/x")], b"x")
    _expect_error_then_close(bad, None)
    good.send(destination=dest, body="still fine")
    assert col.wait_messages(1)[0].body == "still fine"
    time.sleep(0.1)
    assert not col.errors and good.is_connected()


def test_no_connect_in_time_gets_error_and_close(own_server):
    """A TCP client that sends no CONNECT within connect-timeout-ms gets an ERROR saying so, then the close."""
    import time
    from e2e_helpers import RawTcpStomp

    srv = own_server(["--set", "connect-timeout-ms=300"])
    client = RawTcpStomp(srv.stomp_port)
    started = time.monotonic()
    frames = client.wait_closed(5)
    took = time.monotonic() - started
    assert [f.command for f in frames] == ["ERROR"], frames
    assert "no CONNECT" in frames[0].headers.get("message", "")
    assert 0.25 <= took <= 2.0, f"closed after {took:.2f}s, connect-timeout-ms=300"
    client.close()
