"""WebSocket layer: permessage-deflate, close codes (RFC 6455 7.4.1), handshake, echo endpoint, HTTP routes."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from e2e_helpers import RawWs, http_request, uid, ws_frame, ws_handshake_request

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1024 * 1024 + 128 * 1024  # default max-message-size: max-body-size + 128 KiB


# ----------------------------------------------------------------------------------- permessage-deflate


def _stomp_exchange(pub, sub, n=20):
    assert pub.connect().command == "CONNECTED"
    assert sub.connect().command == "CONNECTED"
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "z"), ("receipt", "zs")])
    r = sub.recv_frame()
    assert r.command == "RECEIPT" and r.headers["receipt-id"] == "zs", r
    bodies = [(f"price update {i} " + "EURUSD 1.0842 " * 300).encode() for i in range(n)]
    for i, b in enumerate(bodies):
        pub.send_frame("SEND", [("destination", dest), ("seq", str(i))], b)
    got = [sub.recv_until("MESSAGE") for _ in range(n)]
    assert [m.command for m in got] == ["MESSAGE"] * n, got
    assert [m.body for m in got] == bodies
    assert [m.headers["seq"] for m in got] == [str(i) for i in range(n)]


def test_permessage_deflate_negotiated_and_used(raw_ws):
    """A websockets client with compression="deflate" gets permessage-deflate in the handshake response and
    exchanges STOMP frames (20 compressible messages, context takeover) in both directions."""
    pub = raw_ws(compression="deflate")
    sub = raw_ws(compression="deflate")
    for c in (pub, sub):
        ext = c.ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in ext, f"extension not negotiated: {ext!r}"
        assert c.ws.subprotocol == "v12.stomp"
    _stomp_exchange(pub, sub)


def test_deflate_and_plain_clients_interoperate(raw_ws, raw_tcp):
    """A compressed WebSocket publisher, an uncompressed WebSocket subscriber and a TCP subscriber see the same frames."""
    pub = raw_ws(compression="deflate")
    sub = raw_ws(compression=None)
    _stomp_exchange(pub, sub, n=5)
    pub2 = raw_tcp()
    sub2 = raw_ws(compression="deflate")
    _stomp_exchange(pub2, sub2, n=5)


def test_no_compression(raw_ws):
    """A websockets client with compression=None gets no extension and STOMP works."""
    pub = raw_ws(compression=None)
    sub = raw_ws(compression=None)
    for c in (pub, sub):
        assert c.ws.response.headers.get("Sec-WebSocket-Extensions") is None
    _stomp_exchange(pub, sub, n=5)


def test_binary_websocket_frames_accepted(raw_ws):
    """STOMP frames sent in binary WebSocket messages are accepted like text ones."""
    pub = raw_ws(binary=True)
    sub = raw_ws()
    _stomp_exchange(pub, sub, n=3)


def test_message_below_limit_accepted(raw_ws, raw_tcp):
    """A 900 KiB STOMP message (below the 1 MiB default limit) sent over WebSocket is delivered."""
    pub, sub = raw_ws(compression=None), raw_tcp()
    assert pub.connect().command == "CONNECTED"
    assert sub.connect().command == "CONNECTED"
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "big"), ("receipt", "s")])
    assert sub.recv_frame().command == "RECEIPT"
    body = os.urandom(450 * 1024).hex().encode()  # 900 KiB
    pub.send_frame("SEND", [("destination", dest)], body)
    m = sub.recv_until("MESSAGE", timeout=10)
    assert m.command == "MESSAGE", m
    assert m.body == body


# --------------------------------------------------------------------------------------------- close codes


def _connected_raw_ws(server) -> RawWs:
    ws = RawWs(server.http_port)
    ws.send(ws_frame(0x1, b"CONNECT\naccept-version:1.2\nhost:x\n\n\x00"))
    op, payload = ws.recv_frame()
    assert op in (0x1, 0x2) and payload.startswith(b"CONNECTED"), (op, payload)
    return ws


BAD_WS_FRAMES = {
    "unmasked": ws_frame(0x1, b"SEND\ndestination:/topic/x\n\nhi\x00", mask=False),
    "reserved-opcode-3": ws_frame(0x3, b"hello"),
    "reserved-opcode-b": ws_frame(0xB, b""),
    "rsv2-bit-set": bytes([0xA1]) + ws_frame(0x1, b"hi")[1:],
    "fragmented-ping": ws_frame(0x9, b"p", fin=False),
    "continuation-without-start": ws_frame(0x0, b"orphan"),
    "control-frame-too-long": ws_frame(0x9, b"x" * 126),
}


@pytest.mark.parametrize("case", list(BAD_WS_FRAMES))
def test_bad_frame_closes_with_1002(server, case):
    """A frame violating RFC 6455 (unmasked client frame, reserved opcode, RSV bit without extension,
    fragmented or oversized control frame, stray continuation) makes the server close with 1002."""
    ws = _connected_raw_ws(server)
    try:
        ws.send(BAD_WS_FRAMES[case])
        code = ws.recv_close(5)
        assert code == 1002, f"{case}: expected close code 1002, got {code}"
    finally:
        ws.close()


def test_unmasked_frame_before_stomp_closes_1002(server):
    """An unmasked frame sent right after a hand-written handshake (no STOMP yet) gets close 1002."""
    ws = RawWs(server.http_port, protocols=None)
    try:
        ws.send(ws_frame(0x1, b"hello", mask=False))
        assert ws.recv_close(5) == 1002
    finally:
        ws.close()


def _text(msg) -> str:
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg


def _expect_close_code(ws, code, timeout=5.0):
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as e:
        got = e.rcvd.code if e.rcvd else None
        assert got == code, f"expected close code {code}, got {got} ({e})"
    except TimeoutError:
        pytest.fail(f"connection not closed within {timeout}s (expected close code {code})")


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_invalid_utf8_text_closes_with_1007(server, compression):
    """A text message that is not valid UTF-8 makes the server close with 1007 (with and without deflate)."""
    with ws_connect(server.ws_url, subprotocols=["v12.stomp"], compression=compression, open_timeout=5) as ws:
        ws.send("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
        assert _text(ws.recv(timeout=5)).startswith("CONNECTED")
        ws.send(b"SEND\ndestination:/topic/" + uid().encode() + b"\n\nbad \xc3\x28 utf8 \xff\x00", text=True)
        _expect_close_code(ws, 1007)


def test_invalid_utf8_split_across_fragments_closes_with_1007(server):
    """Invalid UTF-8 in a fragmented text message (bad bytes in the last fragment) also gets 1007."""
    ws = _connected_raw_ws(server)
    try:
        ws.send(ws_frame(0x1, b"SEND\ndestination:/topic/x\n\n", fin=False))
        ws.send(ws_frame(0x0, b"ok so far ", fin=False))
        ws.send(ws_frame(0x0, b"\xed\xa0\x80\x00", fin=True))  # encoded surrogate: invalid UTF-8
        assert ws.recv_close(5) == 1007
    finally:
        ws.close()


def _send_in_background(ws: RawWs, data_parts):
    def run():
        try:
            for d in data_parts:
                ws.send(d)
        except OSError:
            pass  # the server may close before we finish writing

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _oversized_send_frame(size: int = MAX_MESSAGE + 1) -> bytes:
    """A valid STOMP SEND frame of exactly ``size`` bytes with a 5-byte body padded by trailing EOLs (allowed
    after a frame), so that only the WebSocket message limit is exceeded, never a STOMP parse rule or body limit."""
    head = f"SEND\ndestination:/topic/{uid()}\nreceipt:too-big\ncontent-length:5\n\nhello\x00".encode()
    frame = head + b"\n" * (size - len(head))
    assert len(frame) == size
    return frame


def test_too_big_message_closes_with_1009(server):
    """A single text frame one byte over the default max-message-size (a valid STOMP SEND) gets close 1009."""
    ws = _connected_raw_ws(server)
    try:
        t = _send_in_background(ws, [ws_frame(0x1, _oversized_send_frame())])
        code = ws.recv_close(10, fail_on_data=True)
        assert code == 1009, f"expected close code 1009, got {code}"
        t.join(5)
    finally:
        ws.close()


def test_too_big_fragmented_message_closes_with_1009(server):
    """A message one byte over the default max-message-size, sent as three fragments, gets close 1009."""
    ws = _connected_raw_ws(server)
    frame = _oversized_send_frame()
    half = MAX_MESSAGE // 2
    try:
        t = _send_in_background(ws, [
            ws_frame(0x1, frame[:half], fin=False),
            ws_frame(0x0, frame[half:2 * half], fin=False),
            ws_frame(0x0, frame[2 * half:], fin=True),
        ])
        code = ws.recv_close(10, fail_on_data=True)
        assert code == 1009, f"expected close code 1009, got {code}"
        t.join(5)
    finally:
        ws.close()


def test_far_too_big_message_closes_with_1009(server):
    """A 2 MiB message (valid STOMP, one frame) gets close 1009."""
    ws = _connected_raw_ws(server)
    try:
        t = _send_in_background(ws, [ws_frame(0x1, _oversized_send_frame(2 * MAX_MESSAGE))])
        code = ws.recv_close(10, fail_on_data=True)
        assert code == 1009, f"expected close code 1009, got {code}"
        t.join(5)
    finally:
        ws.close()


def test_far_too_big_fragmented_message_closes_with_1009(server):
    """A 2 MiB message (valid STOMP) in four 512 KiB fragments gets close 1009."""
    ws = _connected_raw_ws(server)
    frame = _oversized_send_frame(2 * MAX_MESSAGE)
    q = MAX_MESSAGE // 2
    parts = [frame[i:i + q] for i in range(0, len(frame), q)]
    try:
        t = _send_in_background(ws, [ws_frame(0x1 if i == 0 else 0x0, p, fin=i == len(parts) - 1)
                                     for i, p in enumerate(parts)])
        code = ws.recv_close(10, fail_on_data=True)
        assert code == 1009, f"expected close code 1009, got {code}"
        t.join(5)
    finally:
        ws.close()


def test_too_big_after_decompression_closes_with_1009(server):
    """A deflate-compressed message that is small on the wire but 4 MiB once inflated gets close 1009."""
    with ws_connect(server.ws_url, subprotocols=["v12.stomp"], compression="deflate", open_timeout=5) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
        assert _text(ws.recv(timeout=5)).startswith("CONNECTED")
        ws.send("SEND\ndestination:/topic/x\n\n" + "a" * (4 * MAX_MESSAGE) + "\x00")
        _expect_close_code(ws, 1009, timeout=10)


def test_client_close_is_echoed(server):
    """A client close frame with code 1000 is answered with a close frame (the closing handshake)."""
    ws = _connected_raw_ws(server)
    try:
        ws.send(ws_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
        assert ws.recv_close(5) in (1000, None)
    finally:
        ws.close()


def test_ping_gets_pong(server):
    """A ping is answered with a pong carrying the same payload."""
    ws = _connected_raw_ws(server)
    try:
        ws.send(ws_frame(0x9, b"are-you-there"))
        while True:
            fr = ws.recv_frame(5)
            assert fr is not None, "connection closed instead of pong"
            if fr[0] == 0xA:
                assert fr[1] == b"are-you-there"
                break
    finally:
        ws.close()


# ----------------------------------------------------------------------------------------------- handshake


def test_handshake_accept_key(server):
    """The 101 response carries the RFC 6455 Sec-WebSocket-Accept for the client's key and the chosen subprotocol."""
    key = base64.b64encode(os.urandom(16)).decode()
    status, headers, _, s = http_request(server.http_port, ws_handshake_request("/ws", key=key,
                                                                               protocols="v11.stomp, v12.stomp"))
    s.close()
    assert status == 101, (status, headers)
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    assert headers.get("sec-websocket-accept") == expected
    assert headers.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in headers.get("connection", "").lower()
    assert headers.get("sec-websocket-protocol") == "v12.stomp"


def test_handshake_missing_key_400(server):
    """An upgrade request without Sec-WebSocket-Key is rejected with 400."""
    status, headers, _, s = http_request(server.http_port, ws_handshake_request("/ws", key=None))
    s.close()
    assert status == 400, (status, headers)


def test_handshake_version_8_426(server):
    """An upgrade request with Sec-WebSocket-Version: 8 is rejected with 426 and Sec-WebSocket-Version: 13."""
    status, headers, _, s = http_request(server.http_port, ws_handshake_request("/ws", version="8"))
    s.close()
    assert status == 426, (status, headers)
    assert "13" in headers.get("sec-websocket-version", ""), headers


def test_echo_path_off_by_default(server):
    """Without --echo-path the server does not accept WebSocket upgrades on /echo."""
    with pytest.raises(InvalidStatus):
        ws_connect(server.url("/echo"), open_timeout=5).close()


# ---------------------------------------------------------------------------------------------------- echo


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_echo_text_and_binary(echo_server, compression):
    """The --echo-path endpoint echoes text messages as text and binary messages as binary."""
    with ws_connect(echo_server.url("/echo"), compression=compression, open_timeout=5, max_size=None) as ws:
        for text in ["hello", "héllo ✓ 🐦", "", "x" * 70000]:
            ws.send(text)
            got = ws.recv(timeout=5)
            assert isinstance(got, str) and got == text
        for data in [b"\x00\x01\x02", bytes(range(256)) * 100, b""]:
            ws.send(data)
            got = ws.recv(timeout=5)
            assert isinstance(got, bytes) and got == data


def test_echo_fragmented_message(echo_server):
    """A fragmented text message is echoed as one message with the fragments joined."""
    with ws_connect(echo_server.url("/echo"), compression=None, open_timeout=5) as ws:
        ws.send(["frag-1 ", "frag-2 ", "frag-3"])
        assert ws.recv(timeout=5) == "frag-1 frag-2 frag-3"


def test_stomp_still_works_on_echo_server(echo_server, raw_ws):
    """A server started with --echo-path still serves STOMP on /ws."""
    c = raw_ws(echo_server)
    assert c.connect().command == "CONNECTED"


# ---------------------------------------------------------------------------------------------------- HTTP


def test_healthz(server):
    """GET /healthz answers 200."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/healthz", timeout=5) as r:
        assert r.status == 200


def test_index_page(server):
    """GET / answers 200 with an HTML page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/", timeout=5) as r:
        assert r.status == 200
        assert "text/html" in r.headers.get("Content-Type", "")
        body = r.read().decode("utf-8", "replace").lower()
    assert "<html" in body or "<!doctype html" in body

