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
