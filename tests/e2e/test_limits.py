"""Server-wide limits (issue 9): connections in all and per address, and the WebSocket Origin allow-list."""

from __future__ import annotations

import socket
import time

from e2e_helpers import RawTcpStomp, http_request, ws_handshake_request


def test_connections_per_address_and_in_all(own_server):
    srv = own_server(["--set", "max-connections-per-ip=3", "--set", "max-connections=5"])
    clients = []
    for _ in range(3):
        client = RawTcpStomp(srv.stomp_port)
        client.connect("1.2")
        clients.append(client)
    refused = RawTcpStomp(srv.stomp_port)
    frame = refused.recv_frame(5)
    assert frame.command == "ERROR" and "max-connections-per-ip 3" in frame.headers["message"], frame
    refused.wait_closed(5)
    # From another loopback address: the per-address count is separate, the total is not.
    other = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", srv.stomp_port), source_address=("127.0.0.2", 0))
        other.append(sock)
    sock = socket.create_connection(("127.0.0.1", srv.stomp_port), source_address=("127.0.0.2", 0))
    assert b"max-connections 5" in sock.recv(4096)
    # HTTP is counted too and refused with 503.
    status, _, body, http = http_request(srv.http_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503, (status, body)
    # Closing one frees its place.
    clients.pop().close()
    for s in other:
        s.close()
    replacement = None
    deadline = time.monotonic() + 5
    while replacement is None and time.monotonic() < deadline:
        candidate = RawTcpStomp(srv.stomp_port)
        candidate.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
        if candidate.recv_frame(5).command == "CONNECTED":
            replacement = candidate
        else:
            candidate.close()
            time.sleep(0.1)
    assert replacement is not None, "a freed place is taken again"
    for client in clients + [replacement]:
        client.close()


def test_origin_allow_list(own_server):
    srv = own_server(["--set", "allowed-origins=https://chat.example.com, http://127.0.0.1:1"])
    for origin, expected in [("https://chat.example.com", 101), ("HTTPS://CHAT.EXAMPLE.COM", 101), ("https://evil.example", 403), (None, 101)]:
        request = ws_handshake_request("/ws")
        if origin:
            request = request.replace(b"\r\n\r\n", f"\r\nOrigin: {origin}\r\n\r\n".encode())
        status, _, body, sock = http_request(srv.http_port, request)
        assert status == expected, (origin, status, body)
        if expected == 403:
            assert b"not allowed" in body
        sock.close()


def test_frame_rate_limit_slows_a_flooding_client_without_dropping_anything(own_server):
    """max-frame-rate 200: 600 SENDs written at once take about 2 s to be handled (reading pauses while the bucket
    is empty); all arrive, in order; another client meanwhile is served at once."""
    srv = own_server(["--set", "max-frame-rate=200"])
    reader = RawTcpStomp(srv.stomp_port)
    reader.connect("1.2")
    assert reader.connected_frame.headers["x-max-frame-rate"] == "200"
    reader.send_frame("SUBSCRIBE", {"id": "s", "destination": "/topic/flood", "receipt": "r"})
    reader.recv_until("RECEIPT")
    flooder = RawTcpStomp(srv.stomp_port)
    flooder.connect("1.2")
    started = time.monotonic()
    flooder.send_raw(b"".join(
        f"SEND\ndestination:/topic/flood\nx-seq:{i}\n\n\0".encode() for i in range(600)
    ) + b"SEND\ndestination:/topic/flood\nreceipt:done\n\nend\0")
    other = RawTcpStomp(srv.stomp_port)
    other.connect("1.2")
    assert other.receipt_roundtrip().command == "RECEIPT"
    assert time.monotonic() - started < 1.0, "others are not slowed"
    assert flooder.recv_until("RECEIPT", 15).headers["receipt-id"] == "done"
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 6, f"600 frames over a 200/s bucket (200 at once) took {elapsed:.1f} s"
    seqs = [int(f.headers["x-seq"]) for f in reader.drain(1.0) if f.command == "MESSAGE" and "x-seq" in f.headers]
    assert seqs == list(range(600))
    for client in (reader, flooder, other):
        client.close()
