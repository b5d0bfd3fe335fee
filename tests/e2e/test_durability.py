"""Durability: persistent queue messages survive kill -9 (the SQLite store in --data-dir)."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest
import stomp

from e2e_helpers import Collector, StarlingServer, starling_bin, stomp_close, stomp_connect, uid


def connect(srv: StarlingServer, **kw):
    conn = stomp.Connection12([("127.0.0.1", srv.stomp_port)], timeout=5, reconnect_attempts_max=1, heartbeats=(0, 0))
    col = Collector()
    stomp_connect(conn, col, **kw)
    return conn, col


def start(data_dir, extra=None) -> StarlingServer:
    return StarlingServer(data_dir, extra).start()


def drain(srv: StarlingServer, queue: str, quiet: float = 1.0) -> list:
    """Everything the queue holds now, acknowledged (with receipts) so it is gone."""
    conn, col = connect(srv)
    r = "sub-" + uid()
    conn.subscribe(destination=queue, id="drain", ack="client-individual", receipt=r, headers={"prefetch-count": "0"})
    col.wait_receipt(r)
    seen = 0
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        time.sleep(0.05)
        with col.cond:
            if len(col.messages) != seen:
                seen = len(col.messages)
                last = time.monotonic()
    messages = list(col.messages)
    for i, m in enumerate(messages):
        receipt = f"ack-{i}"
        conn.ack(m.headers["ack"], receipt=receipt)
    if messages:
        col.wait_receipt(f"ack-{len(messages) - 1}", timeout=10)
    stomp_close(conn)
    return messages


def restart_after(srv, tmp_path, clients, *recovered):
    """Closes `clients`, stops the server cleanly and starts it again on the same data directory; its log must
    report a recovery whose line has every fragment of `recovered`."""
    time.sleep(0.3)
    for client in clients:
        stomp_close(client)
    srv.stop()
    assert srv.proc.returncode == 0
    srv = start(tmp_path)
    if not any("store recovered" in line and all(f in line for f in recovered) for line in srv.lines):
        srv.stop()
        raise AssertionError(srv.lines[-5:])
    return srv


def test_persistent_messages_survive_a_restart(tmp_path):
    """Persistent messages (with receipts) are there after a graceful restart, with their delivery counts;
    non-persistent ones are not."""
    srv = start(tmp_path)
    queue = f"/queue/{uid()}"
    conn, col = connect(srv)
    for i in range(20):
        conn.send(destination=queue, body=f"p{i}", headers={"persistent": "true", "receipt": f"r{i}"})
    conn.send(destination=queue, body="transient", headers={"receipt": "rt"})
    col.wait_receipt("r19")
    col.wait_receipt("rt")
    # One delivery without ACK: its count must survive.
    consumer, ccol = connect(srv)
    consumer.subscribe(destination=queue, id="c", ack="client-individual", headers={"prefetch-count": "1"})
    (first,) = ccol.wait_messages(1)
    assert first.body == "p0"
    srv = restart_after(srv, tmp_path, [consumer, conn], "messages=20")
    try:
        messages = drain(srv, queue)
        assert [m.body for m in messages] == [f"p{i}" for i in range(20)]
        assert messages[0].headers["redelivered"] == "true"
        assert messages[0].headers["x-delivery-count"] == "2"
        assert messages[1].headers["x-delivery-count"] == "1"
    finally:
        srv.stop()


def test_an_ended_durable_subscription_leaves_nothing_in_the_store(tmp_path):
    """Persistent messages a durable subscription collected are stored; UNSUBSCRIBE with durable:true deletes them
    with the subscription, so after a restart neither the binding nor its messages come back. Another durable
    subscription's stored messages stay."""
    srv = start(tmp_path)
    topic = f"/topic/{uid()}.news"
    client_id = "durable-" + uid()
    conn, col = connect(srv, headers={"client-id": client_id})
    for sub in ("ended", "kept"):
        r = "sub-" + uid()
        conn.subscribe(destination=topic, id=sub, ack="client-individual", receipt=r,
                       headers={"durable": "true", "prefetch-count": "1"})
        col.wait_receipt(r)
    publisher, pcol = connect(srv)
    for i in range(5):
        publisher.send(destination=topic, body=f"m{i}", headers={"persistent": "true", "receipt": f"r{i}"})
    pcol.wait_receipt("r4")
    col.wait_messages(2)  # one unacknowledged delivery per subscription (prefetch 1), the rest ready
    r = "end-" + uid()
    conn.unsubscribe("ended", headers={"durable": "true", "receipt": r})
    col.wait_receipt(r)
    srv = restart_after(srv, tmp_path, [conn, publisher], "messages=5", "durable_subscriptions=1")
    try:
        back, bcol = connect(srv, headers={"client-id": client_id})
        for sub in ("ended", "kept"):
            back.subscribe(destination=topic, id=sub, ack="auto", headers={"durable": "true"})
        bcol.wait_messages(5)
        time.sleep(0.5)
        assert sorted((m.headers["subscription"], m.body) for m in bcol.messages) == [("kept", f"m{i}") for i in range(5)]
        stomp_close(back)
    finally:
        srv.stop()


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_loses_nothing_receipted_and_resurrects_nothing_acknowledged(tmp_path, round_):
    """Several producers send persistent messages with receipts while a consumer acknowledges with receipts;
    the server is killed with SIGKILL at a random moment. After the restart every message whose RECEIPT arrived
    and that was not acknowledged is delivered again, and no message whose ACK receipt arrived comes back. (A
    message whose ACK was sent but whose ACK receipt never came may go either way: the ACK may have become
    durable just before the kill.)"""
    rng = random.Random(round_ * 7919 + 17)
    srv = start(tmp_path)
    queue = f"/queue/crash{round_}"
    receipted: set[str] = set()
    acked: set[str] = set()
    ack_sent: set[str] = set()  # ACK sent, receipt not seen: durable or not, both outcomes are right
    lock = threading.Lock()
    stop = threading.Event()

    def producer(index: int):
        try:
            conn, col = connect(srv)
        except Exception:
            return
        col_receipts = {}

        class Receipts(stomp.ConnectionListener):
            def on_receipt(self, frame):
                body = col_receipts.pop(frame.headers.get("receipt-id"), None)
                if body is not None:
                    with lock:
                        receipted.add(body)

        conn.set_listener("receipts", Receipts())
        n = 0
        while not stop.is_set():
            body = f"m-{index}-{n}"
            rid = f"r-{index}-{n}"
            col_receipts[rid] = body
            try:
                conn.send(destination=queue, body=body, headers={"persistent": "true", "receipt": rid})
            except Exception:
                return
            n += 1
            if n % 50 == 0:
                time.sleep(0.01)

    def consumer():
        try:
            conn, col = connect(srv)
        except Exception:
            return
        pending = {}

        class Acker(stomp.ConnectionListener):
            def on_message(self, frame):
                rid = "a-" + frame.headers["ack"]
                pending[rid] = frame.body
                with lock:
                    ack_sent.add(frame.body)
                try:
                    conn.ack(frame.headers["ack"], receipt=rid)
                except Exception:
                    pass

            def on_receipt(self, frame):
                body = pending.pop(frame.headers.get("receipt-id"), None)
                if body is not None:
                    with lock:
                        acked.add(body)

        conn.set_listener("acker", Acker())
        conn.subscribe(destination=queue, id="work", ack="client-individual", headers={"prefetch-count": "20"})
        stop.wait()

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(3)]
    threads.append(threading.Thread(target=consumer, daemon=True))
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.8, 2.0))
    srv.kill()  # SIGKILL
    stop.set()
    for t in threads:
        t.join(5)
    with lock:
        receipted_now = set(receipted)
        acked_now = set(acked)
        undecided = set(ack_sent) - acked_now
    assert len(receipted_now) > 50, "the producers got going before the kill"

    srv = start(tmp_path)
    try:
        after = drain(srv, queue, quiet=1.5)
    finally:
        srv.stop()
    bodies = [m.body for m in after]
    back = set(bodies)
    assert len(bodies) == len(back), "no message twice after the restart"
    lost = receipted_now - acked_now - undecided - back
    assert not lost, f"{len(lost)} receipted, unacknowledged messages lost, e.g. {sorted(lost)[:5]}"
    resurrected = acked_now & back
    assert not resurrected, f"{len(resurrected)} durably acknowledged messages came back, e.g. {sorted(resurrected)[:5]}"


def _start_failure(data_dir) -> str:
    """Runs the server on `data_dir` (without creating it) and returns its output; it must exit non-zero."""
    proc = subprocess.run(
        [starling_bin(), "--port", "0", "--stomp-port", "0", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_unusable_data_directory_is_an_error_at_start(tmp_path):
    """A data directory that is a file, or a store file that is not a database: the server refuses to start,
    saying why, instead of starting empty."""
    as_file = tmp_path / "file"
    as_file.write_text("not a directory")
    output = _start_failure(as_file)
    assert "is a file, not a directory" in output, output

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "starling.db").write_bytes(bytes(range(256)) * 64)
    output = _start_failure(damaged)
    assert "starling.db" in output and "storage" in output, output


def test_disk_full_fails_the_send_and_the_server_stays_up(tmp_path):
    """On a full disk (a 1 MiB tmpfs), a persistent SEND that cannot be stored gets an ERROR carrying its receipt id
    saying so; the server keeps serving other clients (topics, and queues in memory)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        srv = start(mount_point / "data")
        try:
            queue = f"/queue/{uid()}"
            conn, col = connect(srv)
            body = "x" * 65536
            failed = None
            for i in range(64):
                receipt = f"r{i}"
                try:
                    conn.send(destination=queue, body=body, headers={"persistent": "true", "receipt": receipt})
                except Exception:
                    break
                col.wait_for(lambda: receipt in col.receipts or col.errors, timeout=10, what=f"receipt {receipt} or ERROR")
                if col.errors:
                    failed = col.errors[0]
                    break
            assert failed is not None, "a 1 MiB disk never filled up"
            assert "disk full" in failed.headers["message"] or "cannot store" in failed.headers["message"], failed.headers
            assert failed.headers["receipt-id"].startswith("r")
            stomp_close(conn)
            # Still serving: pub/sub on a topic, and a non-persistent queue message.
            other, ocol = connect(srv)
            topic = f"/topic/{uid()}"
            other.subscribe(destination=topic, id="t", receipt="s1")
            ocol.wait_receipt("s1")
            other.send(destination=topic, body="still here")
            assert ocol.wait_messages(1)[0].body == "still here"
            other.send(destination=f"/queue/{uid()}", body="in memory", headers={"receipt": "m1"})
            ocol.wait_receipt("m1")
            assert srv.alive()
            stomp_close(other)
        finally:
            srv.stop()
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)
