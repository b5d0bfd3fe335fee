"""STOMP framing over the byte stream: pipelining, fragmentation, CRLF, escapes."""

from __future__ import annotations

import time

from e2e_helpers import Closed, encode_frame, uid


def test_pipelined_frames_in_one_write(raw_tcp):
    """CONNECT, SUBSCRIBE, two SENDs and DISCONNECT written in a single TCP write are all processed in order."""
    c = raw_tcp()
    dest = f"/topic/{uid()}"
    c.send_raw(
        encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")])
        + encode_frame("SUBSCRIBE", [("destination", dest), ("id", "p"), ("receipt", "r-sub")])
        + encode_frame("SEND", [("destination", dest)], b"pipelined-1")
        + encode_frame("SEND", [("destination", dest), ("receipt", "r-send")], b"pipelined-2")
    )
    got = [c.recv_frame() for _ in range(5)]
    assert [f.command for f in got[:2]] == ["CONNECTED", "RECEIPT"], got
    assert got[1].headers["receipt-id"] == "r-sub"
    # the MESSAGEs and the SEND receipt may interleave
    assert [f.body for f in got[2:] if f.command == "MESSAGE"] == [b"pipelined-1", b"pipelined-2"], got
    assert [f.headers.get("receipt-id") for f in got[2:] if f.command == "RECEIPT"] == ["r-send"], got
    c.send_raw(encode_frame("SEND", [("destination", dest)], b"x") + encode_frame("DISCONNECT", [("receipt", "r-bye")]))
    f = c.recv_until("RECEIPT")
    assert f.command == "RECEIPT" and f.headers["receipt-id"] == "r-bye", f
    c.wait_closed(5)


def test_frames_split_byte_by_byte(raw_tcp):
    """Frames arriving one byte per TCP segment are reassembled (incremental parser)."""
    c = raw_tcp()
    dest = f"/topic/{uid()}"
    data = (encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")])
            + encode_frame("SUBSCRIBE", [("destination", dest), ("id", "b"), ("receipt", "rb")])
            + encode_frame("SEND", [("destination", dest), ("x-k", "v")], "slow ✓ body"))
    for i in range(len(data)):
        c.send_raw(data[i:i + 1])
        if i % 16 == 0:
            time.sleep(0.001)
    got = [c.recv_frame() for _ in range(3)]
    assert [f.command for f in got] == ["CONNECTED", "RECEIPT", "MESSAGE"], got
    assert got[2].body == "slow ✓ body".encode()
    assert got[2].headers["x-k"] == "v"


def test_crlf_line_endings(raw_tcp):
    """STOMP 1.2 frames using CRLF line endings are accepted."""
    c = raw_tcp()
    dest = f"/topic/{uid()}"
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:x\r\n\r\n\x00")
    assert c.recv_frame().command == "CONNECTED"
    c.send_raw(f"SUBSCRIBE\r\ndestination:{dest}\r\nid:c\r\nreceipt:rc\r\n\r\n\x00".encode())
    r = c.recv_frame()
    assert r.command == "RECEIPT" and r.headers["receipt-id"] == "rc", r
    c.send_raw(f"SEND\r\ndestination:{dest}\r\n\r\ncrlf body\x00".encode())
    m = c.recv_until("MESSAGE")
    assert m.command == "MESSAGE" and m.body == b"crlf body", m


def test_client_eols_between_frames_ignored(raw_tcp):
    """Extra EOLs (client heart-beats) between frames are ignored."""
    c = raw_tcp()
    c.send_raw(b"\n\n" + encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")]) + b"\n\r\n\n")
    assert c.recv_frame().command == "CONNECTED"
    assert c.receipt_roundtrip().command == "RECEIPT"


def test_escaped_header_roundtrip_raw(raw_tcp):
    """STOMP 1.2 escapes (\\c \\n \\r \\\\) in a SEND header are decoded and re-encoded in the MESSAGE."""
    pub, sub = raw_tcp(), raw_tcp()
    pub.connect()
    sub.connect()
    dest = f"/topic/{uid()}"
    sub.send_frame("SUBSCRIBE", [("destination", dest), ("id", "e"), ("receipt", "s")])
    assert sub.recv_frame().command == "RECEIPT"
    pub.send_raw(f"SEND\ndestination:{dest}\nx-esc:a\\cb\\nc\\rd\\\\e\n\nx\x00".encode())
    m = sub.recv_until("MESSAGE")
    assert m.headers.get("x-esc") == "a:b\nc\rd\\e", m


def test_invalid_header_escape_is_error(raw_tcp):
    """An undefined escape sequence (\\t) in a STOMP 1.2 header is a fatal protocol error: ERROR then close."""
    c = raw_tcp()
    c.connect()
    c.send_raw(f"SEND\nreceipt:esc\ndestination:/topic/{uid()}\nx-bad:a\\tb\n\nx\x00".encode())
    try:
        f = c.recv_frame()
    except Closed:
        raise AssertionError("connection closed without an ERROR frame") from None
    assert f.command == "ERROR", f
    assert f.headers.get("receipt-id") == "esc", f
    c.wait_closed(5)


def test_several_frames_in_one_websocket_message(raw_ws):
    """One WebSocket message carrying several STOMP frames has all of them processed."""
    c = raw_ws()
    dest = f"/topic/{uid()}"
    c.send_raw(
        encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")])
        + encode_frame("SUBSCRIBE", [("destination", dest), ("id", "m"), ("receipt", "rm")])
        + encode_frame("SEND", [("destination", dest)], b"batched")
    )
    got = [c.recv_frame() for _ in range(3)]
    assert [f.command for f in got] == ["CONNECTED", "RECEIPT", "MESSAGE"], got
    assert got[2].body == b"batched"


def test_one_frame_split_across_websocket_messages(raw_ws):
    """A STOMP frame split over several WebSocket messages (as stompjs's splitLargeFrames does) is reassembled."""
    c = raw_ws()
    c.connect("1.2")
    dest = f"/topic/{uid()}"
    c.send_frame("SUBSCRIBE", [("destination", dest), ("id", "s"), ("receipt", "r")])
    assert c.recv_until("RECEIPT").headers["receipt-id"] == "r"
    body = ("chunk-" * 5000).encode()
    frame = encode_frame("SEND", [("destination", dest), ("receipt", "sent")], body)
    for start in range(0, len(frame), 4096):
        c.send_raw(frame[start:start + 4096])
    got = [c.recv_frame(), c.recv_frame()]
    assert sorted(f.command for f in got) == ["MESSAGE", "RECEIPT"], got
    message = next(f for f in got if f.command == "MESSAGE")
    assert message.body == body
