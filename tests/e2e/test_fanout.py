"""Fan-out: many concurrent TCP and WebSocket subscribers on one topic each get every message, in order."""

from __future__ import annotations

import threading

from e2e_helpers import subscribe_sync, uid

KINDS = ["tcp"] * 20 + ["tcp11"] * 10 + ["ws"] * 30  # 60 subscribers


def _subscribers(stomp_client, dest, kinds):
    subs = []
    for i, kind in enumerate(kinds):
        conn, col = stomp_client(kind)
        subscribe_sync(conn, col, dest, f"s{i}")
        subs.append((kind, conn, col))
    return subs


def test_fanout_60_clients_200_messages(stomp_client):
    """60 concurrent subscribers (30 TCP with STOMP 1.1/1.2, 30 WebSocket) on one topic each receive all 200
    messages of a TCP publisher, in publish order, with bodies and headers intact."""
    dest = f"/topic/{uid()}.fanout"
    subs = _subscribers(stomp_client, dest, KINDS)
    pub, pcol = stomp_client("tcp")
    n = 200
    for i in range(n):
        pub.send(destination=dest, body=f"msg-{i}", headers={"seq": str(i)})
    pub.send(destination=f"/topic/{uid()}", body="flush", receipt="done")
    pcol.wait_receipt("done", 10)
    for i, (kind, _, col) in enumerate(subs):
        msgs = col.wait_messages(n, timeout=20)
        seqs = [int(m.headers["seq"]) for m in msgs]
        assert seqs == list(range(n)), f"subscriber {i} ({kind}) got out-of-order/missing: {seqs[:20]}..."
        assert [m.body for m in msgs] == [f"msg-{j}" for j in range(n)]
        assert {m.headers["subscription"] for m in msgs} == {f"s{i}"}
    for _, conn, col in subs:
        assert not col.errors, col.errors
        assert conn.is_connected()


def test_fanout_two_concurrent_publishers(stomp_client):
    """With a TCP and a WebSocket publisher sending 100 messages each at the same time to one topic, each of
    24 mixed subscribers receives all 200, and each publisher's messages keep their order."""
    dest = f"/topic/{uid()}"
    subs = _subscribers(stomp_client, dest, ["tcp", "ws", "tcp11"] * 8)
    pubs = [stomp_client("tcp")[0], stomp_client("ws")[0]]
    n = 100

    def publish(idx, conn):
        for i in range(n):
            conn.send(destination=dest, body=f"{idx}:{i}", headers={"pub": str(idx), "seq": str(i)})

    threads = [threading.Thread(target=publish, args=(k, p)) for k, p in enumerate(pubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for i, (kind, _, col) in enumerate(subs):
        msgs = col.wait_messages(2 * n, timeout=20)
        assert len(msgs) == 2 * n
        for k in range(2):
            seqs = [int(m.headers["seq"]) for m in msgs if m.headers["pub"] == str(k)]
            assert seqs == list(range(n)), f"subscriber {i} ({kind}), publisher {k}: {seqs[:20]}..."
