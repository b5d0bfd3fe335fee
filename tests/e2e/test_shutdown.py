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


def test_drain_window_spreads_disconnects_and_keeps_serving_the_rest(own_server):
    """With `drain-window-ms`, SIGTERM stops accepting and reports draining on /healthz at once, then tells the
    clients one batch at a time over the window (ERROR `server shutting down` on TCP), and the process exits 0 after
    the last one."""
    import threading
    import urllib.error
    import urllib.request

    srv = own_server(["--set", "drain-window-ms=2000"])
    topic = f"/topic/{uid()}"
    clients = []
    for _ in range(20):
        client = RawTcpStomp(srv.stomp_port)
        assert client.connect().command == "CONNECTED"
        client.send_frame("SUBSCRIBE", {"id": "s", "destination": topic, "receipt": "r"})
        assert client.recv_until("RECEIPT").headers["receipt-id"] == "r"
        clients.append(client)
    told_at: list[float] = [0.0] * len(clients)

    def watch(index: int) -> None:
        frames = clients[index].wait_closed(15)
        assert frames and frames[-1].command == "ERROR" and frames[-1].headers["message"] == "server shutting down", frames
        told_at[index] = time.monotonic()

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    t0 = time.monotonic()
    srv.terminate()
    time.sleep(0.3)
    # While draining: /healthz says so (a load balancer stops sending clients), new sessions are refused.
    with pytest.raises(urllib.error.HTTPError) as health:
        urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/healthz", timeout=2)
    assert health.value.code == 503 and health.value.read() == b"draining\n"
    with pytest.raises(Exception) as refused:
        ws_connect(srv.ws_url, subprotocols=["v12.stomp"], open_timeout=2, legacy=True)
    assert "503" in str(refused.value), refused.value
    with pytest.raises(OSError):
        RawTcpStomp(srv.stomp_port, timeout=1).connect()
    for thread in threads:
        thread.join(20)
    assert all(told_at), "every client was told"
    spread = sorted(t - t0 for t in told_at)
    assert spread[0] < 0.6, spread
    assert spread[-1] > 1.2, f"the last client was told {spread[-1]:.2f} s after SIGTERM: not spread over 2 s ({spread})"
    assert spread[len(spread) // 2] > 0.4, spread
    assert srv.wait(10) == 0


def test_drain_with_stomp_py_producers_loses_no_receipted_persistent_message(tmp_path):
    """stomp.py producers send persistent queue messages with receipts while SIGTERM drains the server over a window:
    each producer gets ERROR `server shutting down`, the server exits 0, and after a restart on the same data
    directory every message whose RECEIPT arrived is in the queue."""
    import threading

    from e2e_helpers import StarlingServer

    data = tmp_path / "data"
    srv = StarlingServer(data, ["--set", "drain-window-ms=1500"]).start()
    queue = f"/queue/drain-{uid()}"
    producers = []
    stop = threading.Event()

    def produce(conn, index):
        n = 0
        while not stop.is_set() and conn.is_connected():
            n += 1
            try:
                conn.send(queue, f"p{index}-{n}", headers={"persistent": "true", "receipt": f"p{index}-{n}"})
            except Exception:
                return
            time.sleep(0.002)

    for index in range(3):
        conn = stomp.Connection12([("127.0.0.1", srv.stomp_port)], timeout=5, reconnect_attempts_max=1, heartbeats=(0, 0))
        col = Collector()
        stomp_connect(conn, col)
        thread = threading.Thread(target=produce, args=(conn, index), daemon=True)
        producers.append((conn, col, thread))
        thread.start()
    time.sleep(0.7)
    srv.terminate()
    assert srv.wait(20) == 0, srv.output()
    stop.set()
    receipted: set[str] = set()
    for conn, col, thread in producers:
        thread.join(5)
        col.wait_for(lambda: col.errors or col.disconnected, 5, "the shutdown notice")
        assert any(e.headers.get("message") == "server shutting down" for e in col.errors), [e.headers for e in col.errors]
        receipted.update(col.receipts)
        stomp_close(conn)
    assert len(receipted) > 50, f"only {len(receipted)} receipts before the drain"

    again = StarlingServer(data).start()
    try:
        consumer = RawTcpStomp(again.stomp_port)
        assert consumer.connect().command == "CONNECTED"
        consumer.send_frame("SUBSCRIBE", {"id": "c", "destination": queue, "ack": "auto"})
        bodies: set[str] = set()
        deadline = time.monotonic() + 20
        while not receipted <= bodies and time.monotonic() < deadline:
            try:
                frame = consumer.recv_frame(1)
            except TimeoutError:
                continue
            if frame.command == "MESSAGE":
                bodies.add(frame.body.decode())
        missing = receipted - bodies
        assert not missing, f"{len(missing)} receipted messages lost, e.g. {sorted(missing)[:5]}"
        consumer.close()
    finally:
        again.stop()
