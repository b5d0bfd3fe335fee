"""/queue/ destinations with stomp.py over TCP and WebSocket: competing consumers, ack modes, redelivery,
dead-letter queues, TTL, max length, transactions."""

from __future__ import annotations

import time

import pytest

from e2e_helpers import uid


def queue_name() -> str:
    return f"/queue/{uid()}"


def subscribe(conn, col, destination, sub_id, ack="auto", **headers):
    """SUBSCRIBE with a receipt and wait for it."""
    receipt = "sub-" + uid()
    conn.subscribe(destination=destination, id=sub_id, ack=ack, receipt=receipt, headers=headers or None)
    col.wait_receipt(receipt)


def send_sync(conn, col, destination, body, **headers):
    receipt = "send-" + uid()
    conn.send(destination=destination, body=body, receipt=receipt, headers=headers or None)
    col.wait_receipt(receipt)


def settle(seconds=0.3):
    """Give the server time to deliver anything more (used only to check that nothing more arrives)."""
    time.sleep(seconds)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_messages_wait_then_each_goes_to_exactly_one_consumer(stomp_client, kind):
    """Messages sent before anyone consumes wait in the queue; competing consumers then share them, each message
    reaching exactly one of them, with x-delivery-count 1."""
    queue = queue_name()
    producer, pcol = stomp_client(kind)
    for i in range(30):
        producer.send(destination=queue, body=f"m{i}")
    send_sync(producer, pcol, queue, "m30")
    consumers = [stomp_client(kind) for _ in range(3)]
    for index, (conn, col) in enumerate(consumers):
        subscribe(conn, col, queue, f"c{index}", **{"prefetch-count": "5"})
    deadline = time.monotonic() + 5
    while sum(len(col.messages) for _, col in consumers) < 31 and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    bodies = [m.body for _, col in consumers for m in col.messages]
    assert sorted(bodies) == sorted(f"m{i}" for i in range(31)), "each message exactly once"
    for _, col in consumers:
        for m in col.messages:
            assert m.headers["destination"] == queue
            assert m.headers["x-delivery-count"] == "1"
            assert "redelivered" not in m.headers
    assert sum(1 for _, col in consumers if col.messages) >= 2, "the work was shared"


def test_round_robin_between_consumers(stomp_client):
    """With consumers waiting, consecutive messages alternate between them."""
    queue = queue_name()
    a, acol = stomp_client("tcp")
    b, bcol = stomp_client("ws")
    subscribe(a, acol, queue, "a")
    subscribe(b, bcol, queue, "b")
    producer, pcol = stomp_client("tcp")
    for i in range(10):
        send_sync(producer, pcol, queue, f"m{i}")
    acol.wait_messages(5)
    bcol.wait_messages(5)
    assert len(acol.messages) == 5 and len(bcol.messages) == 5


def test_client_individual_unacked_messages_go_to_another_consumer_when_one_dies(stomp_client, server):
    """A consumer that disconnects without acknowledging: its messages are redelivered to another consumer with
    redelivered:true and x-delivery-count 2; acknowledged ones are not."""
    queue = queue_name()
    worker, wcol = stomp_client("tcp")
    subscribe(worker, wcol, queue, "w", ack="client-individual")
    producer, pcol = stomp_client("tcp")
    for i in range(4):
        send_sync(producer, pcol, queue, f"job{i}")
    msgs = wcol.wait_messages(4)
    worker.ack(msgs[0].headers["ack"])
    worker.ack(msgs[2].headers["ack"])
    time.sleep(0.2)
    worker.disconnect()  # dies with job1 and job3 unacknowledged
    other, ocol = stomp_client("ws")
    subscribe(other, ocol, queue, "o", ack="client-individual")
    redelivered = ocol.wait_messages(2)
    settle()
    assert sorted(m.body for m in ocol.messages) == ["job1", "job3"]
    for m in redelivered:
        assert m.headers["redelivered"] == "true"
        assert m.headers["x-delivery-count"] == "2"


def test_client_mode_ack_is_cumulative(stomp_client):
    """ack:client: acknowledging the third message acknowledges the first two as well."""
    queue = queue_name()
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c", ack="client")
    producer, pcol = stomp_client("tcp")
    for i in range(4):
        send_sync(producer, pcol, queue, f"m{i}")
    msgs = col.wait_messages(4)
    receipt = "ack-" + uid()
    conn.ack(msgs[2].headers["ack"], receipt=receipt)
    col.wait_receipt(receipt)
    conn.disconnect()
    other, ocol = stomp_client("tcp")
    subscribe(other, ocol, queue, "o")
    ocol.wait_messages(1)
    settle()
    assert [m.body for m in ocol.messages] == ["m3"]


def test_nack_requeues_and_poison_message_lands_in_dlq(stomp_client, own_server):
    """NACK puts a message back (redelivered); after max-deliveries it moves to <queue>.dlq with headers saying
    why, where it can be consumed."""
    srv = own_server(["--set", "queue-max-deliveries=3"])
    queue = queue_name()
    conn, col = stomp_client("tcp", srv=srv)
    subscribe(conn, col, queue, "c", ack="client-individual")
    producer, pcol = stomp_client("tcp", srv=srv)
    send_sync(producer, pcol, queue, "poison", **{"x-app": "1"})
    for attempt in range(1, 4):
        col.wait_messages(attempt)
        m = col.messages[-1]
        assert m.body == "poison"
        assert m.headers["x-delivery-count"] == str(attempt)
        conn.nack(m.headers["ack"])
    dlq, dcol = stomp_client("ws", srv=srv)
    subscribe(dlq, dcol, queue + ".dlq", "d", ack="client-individual")
    (dead,) = dcol.wait_messages(1)
    assert dead.body == "poison"
    assert dead.headers["x-death-reason"] == "delivery-limit"
    assert dead.headers["x-original-destination"] == queue
    assert dead.headers["x-death-delivery-count"] == "3"
    assert dead.headers["x-delivery-count"] == "1"
    assert dead.headers["x-app"] == "1"
    assert int(dead.headers["x-death-time"]) > 1_600_000_000_000
    assert dead.headers["destination"] == queue + ".dlq"
    settle()
    assert len(col.messages) == 3


def test_nack_without_requeue_dead_letters_at_once(stomp_client):
    queue = queue_name()
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c", ack="client-individual")
    producer, pcol = stomp_client("tcp")
    send_sync(producer, pcol, queue, "bad")
    (m,) = col.wait_messages(1)
    conn.nack(m.headers["ack"], requeue="false")
    dlq, dcol = stomp_client("tcp")
    subscribe(dlq, dcol, queue + ".dlq", "d")
    (dead,) = dcol.wait_messages(1)
    assert dead.headers["x-death-reason"] == "rejected"
    assert dead.headers["x-death-delivery-count"] == "1"


def test_prefetch_limits_unacknowledged_deliveries(stomp_client):
    """prefetch-count 2: only two unacknowledged messages at a time; each ACK lets one more through."""
    queue = queue_name()
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c", ack="client-individual", **{"prefetch-count": "2"})
    producer, pcol = stomp_client("tcp")
    for i in range(5):
        send_sync(producer, pcol, queue, f"m{i}")
    col.wait_messages(2)
    settle()
    assert len(col.messages) == 2
    conn.ack(col.messages[0].headers["ack"])
    col.wait_messages(3)
    settle()
    assert [m.body for m in col.messages] == ["m0", "m1", "m2"]


def test_stomp11_acks_by_message_id(stomp_client):
    """STOMP 1.1 consumers acknowledge by message-id and subscription."""
    queue = queue_name()
    conn, col = stomp_client("tcp11")
    subscribe(conn, col, queue, "c", ack="client-individual")
    producer, pcol = stomp_client("tcp")
    send_sync(producer, pcol, queue, "one")
    (m,) = col.wait_messages(1)
    assert "ack" not in m.headers
    receipt = "ack-" + uid()
    conn.ack(m.headers["message-id"], "c", receipt=receipt)
    col.wait_receipt(receipt)
    assert not col.errors


def test_unknown_and_repeated_ack_are_errors(stomp_client):
    """ACK for an unknown id, and a NACK of an already-NACKed delivery, get an ERROR naming the id."""
    queue = queue_name()
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c", ack="client-individual")
    receipt = "bad-" + uid()
    conn.ack("nope", receipt=receipt)
    col.wait_for(lambda: col.errors, what="ERROR")
    assert "unknown ack id 'nope'" in col.errors[0].headers["message"]
    assert col.errors[0].headers.get("receipt-id") == receipt

    conn2, col2 = stomp_client("tcp")
    subscribe(conn2, col2, queue, "c", ack="client-individual")
    producer, pcol = stomp_client("tcp")
    send_sync(producer, pcol, queue, "x")
    (m,) = col2.wait_messages(1)
    conn2.nack(m.headers["ack"])
    conn2.nack(m.headers["ack"])
    col2.wait_for(lambda: col2.errors, what="ERROR")
    assert "NACK for unknown ack id" in col2.errors[0].headers["message"]


def test_ttl_expired_messages_go_to_the_dlq(stomp_client):
    """A message whose ttl passes while nobody consumes is dead-lettered with reason expired; a message with
    time left is delivered."""
    queue = queue_name()
    producer, pcol = stomp_client("tcp")
    send_sync(producer, pcol, queue, "short", ttl="100")
    send_sync(producer, pcol, queue, "long", ttl="60000")
    send_sync(producer, pcol, queue, "absolute", expires=str(int(time.time() * 1000) + 100))
    time.sleep(1.3)  # past the ttl and one expiry sweep
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c")
    col.wait_messages(1)
    dlq, dcol = stomp_client("tcp")
    subscribe(dlq, dcol, queue + ".dlq", "d")
    dcol.wait_messages(2)
    settle()
    assert [m.body for m in col.messages] == ["long"]
    assert sorted(m.body for m in dcol.messages) == ["absolute", "short"]
    assert all(m.headers["x-death-reason"] == "expired" for m in dcol.messages)


def test_bad_ttl_header_is_an_error(stomp_client):
    conn, col = stomp_client("tcp")
    conn.send(destination=queue_name(), body="x", headers={"ttl": "soon"})
    col.wait_for(lambda: col.errors, what="ERROR")
    assert "invalid ttl header 'soon'" in col.errors[0].headers["message"]


def test_full_queue_rejects_publish_with_receipt_error(stomp_client, own_server):
    """reject-publish: the SEND past max-length gets an ERROR carrying its receipt id; what was queued stays."""
    srv = own_server(["--set", "queue-max-length=2"])
    queue = queue_name()
    producer, pcol = stomp_client("tcp", srv=srv)
    send_sync(producer, pcol, queue, "a")
    send_sync(producer, pcol, queue, "b")
    producer.send(destination=queue, body="c", receipt="r-full")
    pcol.wait_for(lambda: pcol.errors, what="ERROR")
    error = pcol.errors[0]
    assert error.headers["receipt-id"] == "r-full"
    assert "is full (max-length 2" in error.headers["message"]
    conn, col = stomp_client("tcp", srv=srv)
    subscribe(conn, col, queue, "c")
    col.wait_messages(2)
    settle()
    assert [m.body for m in col.messages] == ["a", "b"]


def test_drop_head_overflow(stomp_client, own_server):
    srv = own_server(["--set", "queue-max-length=2", "--set", "queue-overflow=drop-head"])
    queue = queue_name()
    producer, pcol = stomp_client("tcp", srv=srv)
    for body in ["a", "b", "c"]:
        send_sync(producer, pcol, queue, body)
    conn, col = stomp_client("tcp", srv=srv)
    subscribe(conn, col, queue, "c")
    col.wait_messages(2)
    dlq, dcol = stomp_client("tcp", srv=srv)
    subscribe(dlq, dcol, queue + ".dlq", "d")
    (dead,) = dcol.wait_messages(1)
    assert [m.body for m in col.messages] == ["b", "c"]
    assert dead.body == "a" and dead.headers["x-death-reason"] == "max-length"


def test_transaction_covers_send_and_ack(stomp_client):
    """SENDs and ACKs in a transaction take effect at COMMIT; ABORT drops the SENDs and leaves the acked message
    unacknowledged (it is redelivered after disconnect)."""
    queue = queue_name()
    producer, pcol = stomp_client("tcp")
    tx = producer.begin()
    producer.send(destination=queue, body="in-tx", transaction=tx)
    conn, col = stomp_client("tcp")
    subscribe(conn, col, queue, "c", ack="client-individual")
    settle()
    assert col.messages == []
    receipt = "commit-" + uid()
    producer.commit(tx, headers={"receipt": receipt})
    pcol.wait_receipt(receipt)
    (m,) = col.wait_messages(1)
    atx = conn.begin()
    conn.ack(m.headers["ack"], transaction=atx)
    conn.abort(atx)
    conn.disconnect()
    other, ocol = stomp_client("tcp")
    subscribe(other, ocol, queue, "o")
    (again,) = ocol.wait_messages(1)
    assert again.body == "in-tx" and again.headers["redelivered"] == "true"


def test_unsubscribe_returns_unacked_messages(stomp_client):
    queue = queue_name()
    conn, col = stomp_client("ws")
    subscribe(conn, col, queue, "c", ack="client-individual")
    producer, pcol = stomp_client("tcp")
    send_sync(producer, pcol, queue, "x")
    col.wait_messages(1)
    receipt = "unsub-" + uid()
    conn.unsubscribe("c", headers={"receipt": receipt})
    col.wait_receipt(receipt)
    other, ocol = stomp_client("tcp")
    subscribe(other, ocol, queue, "o")
    (m,) = ocol.wait_messages(1)
    assert m.body == "x" and m.headers["x-delivery-count"] == "2"


@pytest.mark.parametrize("destination", ["/queue/", "/queue/a*b", "/queue/#"])
def test_malformed_queue_destination_is_an_error(stomp_client, destination):
    conn, col = stomp_client("tcp")
    conn.send(destination=destination, body="x")
    col.wait_for(lambda: col.errors, what="ERROR")
    assert destination in col.errors[0].headers["message"]
