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
    """Messages sent before anyone consumes wait in the queue; competing consumers then share what follows, each
    message reaching exactly one of them, with x-delivery-count 1."""
    queue = queue_name()
    producer, pcol = stomp_client(kind)
    for i in range(30):
        producer.send(destination=queue, body=f"early{i}")
    send_sync(producer, pcol, queue, "early30")
    consumers = [stomp_client(kind) for _ in range(3)]
    subscribe(*consumers[0], queue, "c0", **{"prefetch-count": "5"})
    consumers[0][1].wait_messages(31)  # what waited goes to the first consumer (auto ack frees its credit)
    for index, (conn, col) in enumerate(consumers[1:], start=1):
        subscribe(conn, col, queue, f"c{index}", **{"prefetch-count": "5"})
    for i in range(30):
        producer.send(destination=queue, body=f"late{i}")
    send_sync(producer, pcol, queue, "late30")
    deadline = time.monotonic() + 5
    while sum(len(col.messages) for _, col in consumers) < 62 and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    bodies = [m.body for _, col in consumers for m in col.messages]
    expected = [f"early{i}" for i in range(31)] + [f"late{i}" for i in range(31)]
    assert sorted(bodies) == sorted(expected), "each message exactly once"
    for _, col in consumers:
        for m in col.messages:
            assert m.headers["destination"] == queue
            assert m.headers["x-delivery-count"] == "1"
            assert "redelivered" not in m.headers
    assert all(any(m.body.startswith("late") for m in col.messages) for _, col in consumers), "the work was shared"


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
    """A consumer whose socket drops without DISCONNECT: its messages are redelivered to another consumer with
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
    worker.transport.disconnect_socket()  # killed: the socket drops with job1 and job3 unacknowledged
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


# ---------------------------------------------------------------------------------------------------------
# temporary queues, /user/ destinations, idempotent publishing, durable topic subscriptions
# ---------------------------------------------------------------------------------------------------------

def test_request_reply_through_a_temp_queue(stomp_client):
    """A requester sends with reply-to:/temp-queue/replies; the server rewrites reply-to to the queue's full name,
    the replier (another connection) SENDs there, and the reply reaches the requester without it subscribing."""
    service_queue = queue_name()
    service, scol = stomp_client("tcp")
    subscribe(service, scol, service_queue, "svc")
    requester, rcol = stomp_client("ws")
    send_sync(requester, rcol, service_queue, "2+2?", **{"reply-to": "/temp-queue/replies"})
    (request,) = scol.wait_messages(1)
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/queue/temp.") and reply_to.endswith(".replies"), reply_to
    send_sync(service, scol, reply_to, "4", **{"correlation-id": "c1"})
    (reply,) = rcol.wait_messages(1)
    assert reply.body == "4"
    assert reply.headers["subscription"] == "/temp-queue/replies"
    assert reply.headers["correlation-id"] == "c1"


def test_temp_queue_is_private_and_ends_with_its_connection(stomp_client):
    """Another connection may not consume from a temporary queue; after the owner disconnects, a SEND to it is
    refused with an ERROR."""
    owner, ocol = stomp_client("tcp")
    subscribe(owner, ocol, "/temp-queue/mine", "t")
    service_queue = queue_name()
    service, scol = stomp_client("tcp")
    subscribe(service, scol, service_queue, "svc")
    send_sync(owner, ocol, service_queue, "hi", **{"reply-to": "/temp-queue/mine"})
    (request,) = scol.wait_messages(1)
    full_name = request.headers["reply-to"]

    thief, tcol = stomp_client("tcp")
    thief.subscribe(destination=full_name, id="steal")
    tcol.wait_for(lambda: tcol.errors, what="ERROR")
    assert "temporary queue" in tcol.errors[0].headers["message"]

    owner.disconnect()
    time.sleep(0.3)
    late, lcol = stomp_client("tcp")
    late.send(destination=full_name, body="too late", receipt="r-late")
    lcol.wait_for(lambda: lcol.errors, what="ERROR")
    assert "does not exist" in lcol.errors[0].headers["message"]
    assert lcol.errors[0].headers["receipt-id"] == "r-late"


def test_user_destination_reaches_every_session_of_that_user(stomp_client):
    """SEND /user/alice/queue/inbox reaches both of alice's sessions subscribed to /user/queue/inbox, and not bob's."""
    alice1, a1 = stomp_client("tcp", username="alice", passcode="x")
    alice2, a2 = stomp_client("ws", username="alice", passcode="x")
    bob, b = stomp_client("tcp", username="bob", passcode="x")
    for conn, col in [(alice1, a1), (alice2, a2), (bob, b)]:
        subscribe(conn, col, "/user/queue/inbox", "inbox")
    sender, scol = stomp_client("tcp")
    send_sync(sender, scol, "/user/alice/queue/inbox", "for alice")
    assert a1.wait_messages(1)[0].body == "for alice"
    assert a2.wait_messages(1)[0].body == "for alice"
    settle()
    assert b.messages == []


def test_user_destination_needs_a_login(stomp_client):
    conn, col = stomp_client("tcp")
    conn.subscribe(destination="/user/queue/inbox", id="i")
    col.wait_for(lambda: col.errors, what="ERROR")
    assert "needs a login" in col.errors[0].headers["message"]


@pytest.mark.parametrize("kind", ["queue", "topic"])
def test_idempotency_key_delivers_once_and_answers_every_receipt(stomp_client, kind):
    """A SEND repeating an idempotency-key gets its RECEIPT again but delivers nothing."""
    destination = queue_name() if kind == "queue" else f"/topic/{uid()}"
    conn, col = stomp_client("tcp")
    subscribe(conn, col, destination, "s")
    producer, pcol = stomp_client("ws")
    send_sync(producer, pcol, destination, "once", **{"idempotency-key": "k-1"})
    other, ocol = stomp_client("tcp")  # a retry from a reconnected producer
    send_sync(other, ocol, destination, "once", **{"idempotency-key": "k-1"})
    send_sync(other, ocol, destination, "second", **{"idempotency-key": "k-2"})
    col.wait_messages(2)
    settle()
    assert [m.body for m in col.messages] == ["once", "second"]


def test_durable_subscription_collects_while_away(stomp_client):
    """A durable topic subscription (client-id on CONNECT, durable:true) keeps collecting while its client is
    disconnected and delivers the backlog when it comes back; UNSUBSCRIBE with durable:true ends it."""
    topic = f"/topic/{uid()}.news"
    client_id = "durable-" + uid()
    conn, col = stomp_client("tcp", headers={"client-id": client_id})
    subscribe(conn, col, topic, "news", ack="client-individual", durable="true")
    publisher, pcol = stomp_client("tcp")
    send_sync(publisher, pcol, topic, "while here")
    (first,) = col.wait_messages(1)
    assert first.headers["destination"] == topic
    conn.ack(first.headers["ack"])
    time.sleep(0.2)
    conn.disconnect()
    for i in range(3):
        send_sync(publisher, pcol, topic, f"while away {i}")
    back, bcol = stomp_client("ws", headers={"client-id": client_id})
    subscribe(back, bcol, topic, "news", ack="client-individual", durable="true")
    msgs = bcol.wait_messages(3)
    assert [m.body for m in msgs] == [f"while away {i}" for i in range(3)]
    for m in msgs:
        back.ack(m.headers["ack"])
    receipt = "end-" + uid()
    back.unsubscribe("news", headers={"durable": "true", "receipt": receipt})
    bcol.wait_receipt(receipt)
    back.disconnect()
    send_sync(publisher, pcol, topic, "after the end")
    again, acol = stomp_client("tcp", headers={"client-id": client_id})
    subscribe(again, acol, topic, "news", durable="true")
    settle(0.5)
    assert acol.messages == [], "the ended durable subscription kept nothing"


def test_durable_subscription_needs_an_identity(stomp_client):
    conn, col = stomp_client("tcp")
    conn.subscribe(destination=f"/topic/{uid()}", id="d", headers={"durable": "true"})
    col.wait_for(lambda: col.errors, what="ERROR")
    assert "client-id" in col.errors[0].headers["message"]


def test_policy_table_sets_max_deliveries_per_pattern(stomp_client, own_server, tmp_path):
    """A [[policy]] table in the config file gives /queue/strict.* one delivery; other queues keep the default."""
    config = tmp_path / "starling.toml"
    config.write_text('[[policy]]\nmatch = "/queue/strict.*"\nmax-deliveries = 1\n')
    srv = own_server(["--config", str(config)])
    strict = f"/queue/strict.{uid()}"
    conn, col = stomp_client("tcp", srv=srv)
    subscribe(conn, col, strict, "s", ack="client-individual")
    producer, pcol = stomp_client("tcp", srv=srv)
    send_sync(producer, pcol, strict, "once")
    (m,) = col.wait_messages(1)
    conn.nack(m.headers["ack"])
    dlq, dcol = stomp_client("tcp", srv=srv)
    subscribe(dlq, dcol, strict + ".dlq", "d")
    (dead,) = dcol.wait_messages(1)
    assert dead.headers["x-death-reason"] == "delivery-limit"
    settle()
    assert len(col.messages) == 1
