"""Publish/subscribe over TCP and WebSocket with stomp.py, receipts, headers and bodies."""

from __future__ import annotations

import time

import pytest

from e2e_helpers import subscribe_sync, uid


def _roundtrip(stomp_client, pub_kind, sub_kind, n=5):
    pub, pub_col = stomp_client(pub_kind)
    sub, sub_col = stomp_client(sub_kind)
    dest = f"/topic/{uid()}.news"
    subscribe_sync(sub, sub_col, dest, "s1")
    for i in range(n):
        pub.send(destination=dest, body=f"hello {i}", headers={"seq": str(i)})
    msgs = sub_col.wait_messages(n)
    assert [m.body for m in msgs] == [f"hello {i}" for i in range(n)]
    for m in msgs:
        assert m.headers["destination"] == dest
        assert m.headers["subscription"] == "s1"
        assert m.headers.get("message-id"), m.headers
    assert len({m.headers["message-id"] for m in msgs}) == n, "message-id values must be unique"
    assert not pub_col.errors and not sub_col.errors


def test_tcp_publish_subscribe(stomp_client):
    """A stomp.py TCP subscriber receives, in order, what a stomp.py TCP publisher sends to its topic."""
    _roundtrip(stomp_client, "tcp", "tcp")


def test_ws_publish_subscribe(stomp_client):
    """A stomp.py WebSocket subscriber receives, in order, what a stomp.py WebSocket publisher sends."""
    _roundtrip(stomp_client, "ws", "ws")


@pytest.mark.parametrize("pub_kind,sub_kind", [("tcp", "ws"), ("ws", "tcp"), ("tcp11", "ws"), ("ws", "tcp10")])
def test_cross_transport(stomp_client, pub_kind, sub_kind):
    """Messages cross between the TCP and WebSocket transports (and STOMP versions) in both directions."""
    if sub_kind == "tcp10":
        pub, _ = stomp_client(pub_kind)
        sub, col = stomp_client("tcp10")
        dest = f"/topic/{uid()}"
        r = "r-" + uid()
        sub.subscribe(destination=dest, id="s10", receipt=r)
        col.wait_receipt(r)
        pub.send(destination=dest, body="to one-oh")
        (m,) = col.wait_messages(1)
        assert m.body == "to one-oh"
        assert m.headers["destination"] == dest
        return
    _roundtrip(stomp_client, pub_kind, sub_kind, n=3)


def test_ws_with_offered_subprotocol(stomp_client):
    """stomp.py over WebSocket works when it offers the v12.stomp subprotocol, and on the /stomp alias."""
    pub, _ = stomp_client("ws", ws_header=["Sec-WebSocket-Protocol: v12.stomp"])
    sub, col = stomp_client("ws", ws_path="/stomp")
    dest = f"/topic/{uid()}"
    subscribe_sync(sub, col, dest, "a")
    pub.send(destination=dest, body="via alias")
    assert col.wait_messages(1)[0].body == "via alias"


def test_subscriber_does_not_get_other_topics(stomp_client):
    """A subscriber only receives messages for the destination it subscribed to."""
    conn, col = stomp_client("tcp")
    a, b = f"/topic/{uid()}", f"/topic/{uid()}"
    subscribe_sync(conn, col, a, "sa")
    conn.send(destination=b, body="not for you", receipt="rb")
    conn.send(destination=a, body="for you", receipt="ra")
    col.wait_receipt("ra")
    col.wait_messages(1)
    time.sleep(0.3)
    assert [m.body for m in col.messages] == ["for you"]


def test_publisher_receives_own_message_when_subscribed(stomp_client):
    """A connection subscribed to a topic also receives the messages it publishes itself there."""
    conn, col = stomp_client("ws")
    dest = f"/topic/{uid()}"
    subscribe_sync(conn, col, dest, "me")
    conn.send(destination=dest, body="echo me")
    assert col.wait_messages(1)[0].body == "echo me"


def test_two_subscriptions_one_connection(stomp_client):
    """Two subscriptions of one connection that both match get one MESSAGE each, each tagged with its own id."""
    pub, _ = stomp_client("tcp")
    conn, col = stomp_client("tcp")
    w = uid()
    subscribe_sync(conn, col, f"/topic/{w}.x", "exact")
    subscribe_sync(conn, col, f"/topic/{w}.*", "wild")
    pub.send(destination=f"/topic/{w}.x", body="both")
    msgs = col.wait_messages(2)
    time.sleep(0.2)
    assert sorted(m.headers["subscription"] for m in col.messages) == ["exact", "wild"]
    assert all(m.body == "both" for m in msgs)


# ---------------------------------------------------------------------------------------------- receipts


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_receipts_send_subscribe_unsubscribe(stomp_client, kind):
    """SEND, SUBSCRIBE and UNSUBSCRIBE carrying a receipt header each get a RECEIPT with that receipt-id,
    and after the UNSUBSCRIBE receipt no more messages are delivered to that subscription."""
    conn, col = stomp_client(kind)
    dest = f"/topic/{uid()}"
    conn.subscribe(destination=dest, id="r1", receipt="rcpt-sub")
    col.wait_receipt("rcpt-sub")
    conn.send(destination=dest, body="one", receipt="rcpt-send")
    col.wait_receipt("rcpt-send")
    col.wait_messages(1)
    conn.unsubscribe(id="r1", receipt="rcpt-unsub")
    col.wait_receipt("rcpt-unsub")
    conn.send(destination=dest, body="two", receipt="rcpt-send2")
    col.wait_receipt("rcpt-send2")
    time.sleep(0.3)
    assert [m.body for m in col.messages] == ["one"]
    assert not col.errors


def test_disconnect_receipt_then_close_raw(raw_tcp):
    """DISCONNECT with a receipt gets a RECEIPT with that receipt-id and then the server closes the connection."""
    c = raw_tcp()
    assert c.connect().command == "CONNECTED"
    c.send_frame("DISCONNECT", [("receipt", "bye-77")])
    f = c.recv_frame()
    assert f.command == "RECEIPT", f
    assert f.headers["receipt-id"] == "bye-77"
    c.wait_closed(5)


@pytest.mark.parametrize("version", ["1.2", "1.1", "1.0"])
def test_receipt_id_is_escaped_per_version(raw_tcp, version):
    """A receipt id with a colon, a backslash and (1.1, 1.2) a line feed comes back intact: escaped on the wire
    in 1.1 and 1.2, raw in 1.0 (which has no escapes)."""
    c = raw_tcp()
    assert c.connect(version=version).command == "CONNECTED"
    receipt = "r:1\\x\nend" if version != "1.0" else "r:1\\x"
    c.send_frame("SEND", [("destination", f"/topic/{uid()}"), ("receipt", receipt)], b"ping",
                 escape=version != "1.0")
    f = c.recv_until("RECEIPT")
    assert f.headers["receipt-id"] == receipt, f


def test_disconnect_receipt_stomp_py(stomp_client):
    """stomp.py's disconnect(receipt=...) over WebSocket gets its RECEIPT and the connection ends."""
    conn, col = stomp_client("ws")
    conn.disconnect(receipt="ws-bye")
    col.wait_receipt("ws-bye")
    col.wait_for(lambda: col.disconnected, 5, "disconnect")
    assert not conn.is_connected()


# ----------------------------------------------------------------------------------- headers and bodies


@pytest.mark.parametrize("pub_kind,sub_kind", [("tcp", "tcp"), ("tcp", "ws"), ("ws", "tcp")])
def test_user_headers_and_content_type_carried(stomp_client, pub_kind, sub_kind):
    """User headers (including values needing STOMP 1.2 escaping: ':', '\\\\', newline, non-ASCII) and
    content-type reach the subscriber unchanged."""
    pub, _ = stomp_client(pub_kind)
    sub, col = stomp_client(sub_kind)
    dest = f"/topic/{uid()}"
    subscribe_sync(sub, col, dest, "h")
    headers = {
        "x-plain": "value",
        "x-colon": "a:b:c",
        "x-backslash": "C:\\path\\to",
        "x-newline": "line1\nline2",
        "x-unicode": "héllo wörld ✓",
        "correlation-id": "abc-123",
    }
    pub.send(destination=dest, body='{"k": 1}', content_type="application/json;charset=utf-8", headers=headers)
    (m,) = col.wait_messages(1)
    for k, v in headers.items():
        assert m.headers.get(k) == v, f"header {k}: expected {v!r}, got {m.headers.get(k)!r}"
    assert m.headers.get("content-type") == "application/json;charset=utf-8"
    assert m.body == '{"k": 1}'


@pytest.mark.parametrize("sub_transport", ["tcp", "ws"])
def test_body_with_nul_and_content_length(raw_tcp, raw_ws, sub_transport):
    """A body containing NUL bytes sent with content-length arrives byte-for-byte, on TCP and WebSocket."""
    pub = raw_tcp()
    sub = raw_tcp() if sub_transport == "tcp" else raw_ws()
    assert pub.connect().command == "CONNECTED"
    assert sub.connect().command == "CONNECTED"
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "n"), ("receipt", "s")])
    assert sub.recv_frame().command == "RECEIPT"
    body = b"a\x00b\x00\x00c\n\nd\x00"
    pub.send_frame("SEND", [("destination", dest), ("content-type", "application/octet-stream")], body)
    m = sub.recv_until("MESSAGE")
    assert m.command == "MESSAGE", m
    assert "content-length" in m.headers, f"MESSAGE with NUL in body lacks content-length: {m!r}"
    assert int(m.headers["content-length"]) == len(body)
    assert m.body == body


def test_binary_body_to_websocket_subscriber(raw_tcp, raw_ws):
    """A body that is not valid UTF-8 (all 256 byte values), published over TCP, reaches a WebSocket
    subscriber intact (so the server must not put it in a text WebSocket frame)."""
    pub, sub = raw_tcp(), raw_ws()
    pub.connect()
    sub.connect()
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "b"), ("receipt", "s")])
    assert sub.recv_frame().command == "RECEIPT"
    body = bytes(range(256)) * 4
    pub.send_frame("SEND", [("destination", dest), ("content-type", "application/octet-stream")], body)
    m = sub.recv_until("MESSAGE")
    assert m.command == "MESSAGE", m
    assert m.body == body
    assert sub.close_code is None, f"WebSocket closed with {sub.close_code}"


@pytest.mark.parametrize("pub_kind,sub_kind", [("tcp", "tcp"), ("ws", "tcp"), ("tcp", "ws")])
def test_utf8_body(stomp_client, pub_kind, sub_kind):
    """A UTF-8 body with multi-byte characters (accents, CJK, emoji) arrives unchanged."""
    pub, _ = stomp_client(pub_kind)
    sub, col = stomp_client(sub_kind)
    dest = f"/topic/{uid()}"
    subscribe_sync(sub, col, dest, "u")
    text = "héllo wörld — 你好, 世界 🐦🚀 ∑ ✓"
    pub.send(destination=dest, body=text, content_type="text/plain;charset=utf-8")
    (m,) = col.wait_messages(1)
    assert m.body == text


def test_body_without_content_length(raw_tcp):
    """A SEND without content-length (body ends at the first NUL) is delivered with its body intact."""
    pub, sub = raw_tcp(), raw_tcp()
    pub.connect()
    sub.connect()
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "x"), ("receipt", "s")])
    assert sub.recv_frame().command == "RECEIPT"
    pub.send_frame("SEND", [("destination", dest)], b"no length here", content_length=False)
    m = sub.recv_until("MESSAGE")
    assert m.body == b"no length here"


def test_large_body_100k(stomp_client):
    """A 100 KiB body travels intact from a TCP publisher to a WebSocket subscriber."""
    pub, _ = stomp_client("tcp")
    sub, col = stomp_client("ws")
    dest = f"/topic/{uid()}"
    subscribe_sync(sub, col, dest, "big")
    body = ("0123456789abcdef" * 6400)
    pub.send(destination=dest, body=body)
    (m,) = col.wait_messages(1)
    assert m.body == body


def test_order_from_one_publisher(stomp_client):
    """500 messages from one publisher on one topic arrive in publish order."""
    pub, _ = stomp_client("tcp")
    sub, col = stomp_client("ws")
    dest = f"/topic/{uid()}"
    subscribe_sync(sub, col, dest, "o")
    for i in range(500):
        pub.send(destination=dest, body=str(i))
    msgs = col.wait_messages(500, timeout=15)
    assert [int(m.body) for m in msgs] == list(range(500))
