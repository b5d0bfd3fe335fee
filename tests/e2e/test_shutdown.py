"""Graceful shutdown on SIGTERM."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from e2e_helpers import Collector, RawTcpStomp, RawWsStomp, stomp_close, stomp_connect, subscribe_sync, uid

import stomp


def _close_code_of(ws, timeout):
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None
    except TimeoutError:
        return "still open"


def test_sigterm_closes_websockets_with_1001_and_exits_0(own_server):
    """On SIGTERM every WebSocket (STOMP sessions, a subscribed one, an idle one and an echo one) gets close
    code 1001, TCP STOMP connections are closed, and the process exits with status 0 within a few seconds."""
    srv = own_server(["--echo-path", "/echo"])
    stomp_ws = RawWsStomp(srv.ws_url)
    assert stomp_ws.connect().command == "CONNECTED"
    sub_ws = RawWsStomp(srv.ws_url, compression="deflate")
    assert sub_ws.connect().command == "CONNECTED"
    sub_ws.send_frame("SUBSCRIBE", [("destination", f"/topic/{uid()}"), ("id", "1"), ("receipt", "s")])
    assert sub_ws.recv_frame().command == "RECEIPT"
    idle_ws = ws_connect(srv.ws_url, subprotocols=["v12.stomp"], open_timeout=5, legacy=True)
    echo_ws = ws_connect(srv.url("/echo"), open_timeout=5, legacy=True)
    echo_ws.send("before")
    assert echo_ws.recv(timeout=5) == "before"
    tcp = RawTcpStomp(srv.stomp_port)
    assert tcp.connect().command == "CONNECTED"
    py = stomp.Connection12([("127.0.0.1", srv.stomp_port)], timeout=5, reconnect_attempts_max=1)
    col = Collector()
    stomp_connect(py, col)
    subscribe_sync(py, col, f"/topic/{uid()}", "py")

    t0 = time.monotonic()
    srv.terminate()
    try:
        codes = {
            "stomp-ws": _close_code_of(stomp_ws.ws, 5),
            "subscribed-ws": _close_code_of(sub_ws.ws, 5),
            "idle-ws": _close_code_of(idle_ws, 5),
            "echo-ws": _close_code_of(echo_ws, 5),
        }
        problems = [f"{k}: close code {v}, expected 1001" for k, v in codes.items() if v != 1001]
        try:
            frames = tcp.wait_closed(5)
            if not all(f.command == "ERROR" for f in frames):
                problems.append(f"TCP STOMP client got unexpected frames: {frames}")
        except TimeoutError:
            problems.append("TCP STOMP connection still open 5 s after SIGTERM")
        try:
            col.wait_for(lambda: col.disconnected, 5, "stomp.py disconnect notification")
        except AssertionError as e:
            problems.append(str(e))
        rc = srv.wait(max(0.1, 8 - (time.monotonic() - t0)))
        if rc is None:
            problems.append("server still running 8 s after SIGTERM")
        elif rc != 0:
            problems.append(f"server exited with status {rc}")
        assert not problems, "after SIGTERM: " + "; ".join(problems) + "\nserver output:\n" + srv.output()
    finally:
        for c in (stomp_ws, sub_ws, tcp):
            c.close()
        for w in (idle_ws, echo_ws):
            try:
                w.close()
            except Exception:
                pass
        stomp_close(py)


def test_sigterm_idle_server_exits_0(own_server):
    """A server with no connections exits with status 0 promptly after SIGTERM."""
    srv = own_server()
    srv.terminate()
    rc = srv.wait(5)
    assert rc == 0, f"exit status {rc} after SIGTERM:\n{srv.output()}"
