"""Rooms, history and resume (docs/rooms.md); presence is in test_presence.py.

* ``/room/<name>``: SUBSCRIBE joins, SEND reaches every connection in the room; every MESSAGE carries ``x-offset``
  (consecutive), ``x-epoch`` and a server-set ``user-name``.
* history (``x-history:N``) and resume (``x-resume-from:<epoch>:<offset>``) are delivered first, marked
  ``x-history:true``, before the RECEIPT of the SUBSCRIBE (which carries ``x-epoch``, ``x-offset`` and, for a resume,
  ``x-recovered``), then live messages follow with no gap and no duplicate.
* ``[[policy]]`` ``history`` / ``history-ttl-ms`` limit what a room keeps.

Every test uses its own room names (``uid()``), so they can share one server. Frame order matters in most of them,
so they use the hand-written clients; a few use stomp.py over TCP and WebSocket.
"""

from __future__ import annotations

import threading
import time

import pytest

from e2e_helpers import RawTcpStomp, StarlingServer, uid
from room_helpers import T, bodies, connect, join, message, messages, offsets, py_client, py_join, rx, send, sync, watch


# ==================================================================================================
# messages
# ==================================================================================================


def test_room_messages_carry_offset_epoch_and_user_name(raw_tcp):
    """A member of a fresh room gets a RECEIPT with x-offset:0 and an x-epoch; the messages a non-member sends
    (logged in as alice) arrive in order with x-offset 1, 2, 3 ..., the RECEIPT's x-epoch, user-name:alice, the
    room as destination and no x-history header."""
    room = f"/room/{uid()}"
    bob = connect(raw_tcp, login="bob")
    alice = connect(raw_tcp, login="alice")
    before, receipt = join(bob, room)
    assert before == [], before
    assert receipt.headers.get("x-offset") == "0", receipt
    epoch = receipt.headers.get("x-epoch")
    assert epoch, f"RECEIPT of a room SUBSCRIBE without x-epoch: {receipt!r}"
    assert "x-recovered" not in receipt.headers, f"x-recovered without x-resume-from: {receipt!r}"
    for i in range(5):
        send(alice, room, f"m{i}")
    msgs = messages(bob, 5)
    assert bodies(msgs) == [f"m{i}" for i in range(5)]
    assert offsets(msgs) == [1, 2, 3, 4, 5]
    for m in msgs:
        assert m.headers.get("x-epoch") == epoch, m
        assert m.headers.get("user-name") == "alice", m
        assert m.headers.get("destination") == room, m
        assert m.headers.get("message-id"), m
        assert "x-history" not in m.headers, m
    assert bob.drain(0.2) == [], "more MESSAGEs than were sent"


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_stomp_py_members_see_the_same_stream(stomp_client, kind):
    """Two stomp.py members (over TCP or WebSocket) both receive every message of the room, their own included,
    in the same order with the same offsets, each with its author's login as user-name."""
    room = f"/room/{uid()}"
    alice, alog = py_client(stomp_client, kind, "alice")
    bob, blog = py_client(stomp_client, kind, "bob")
    py_join(alice, alog, room, "a", {"x-presence-status": "online"})
    py_join(bob, blog, room, "b")
    alice.send(destination=room, body="a1")
    alice.send(destination=room, body="a2")
    alog.messages("a", 2)  # keep the order of the authors deterministic
    bob.send(destination=room, body="b1")
    seen = {}
    for name, log, sub in (("alice", alog, "a"), ("bob", blog, "b")):
        msgs = log.messages(sub, 3)
        seen[name] = [(m.body, m.headers.get("user-name"), m.headers.get("x-offset"), m.headers.get("x-epoch"))
                      for m in msgs]
    assert seen["alice"] == seen["bob"], seen
    assert [(b, u) for b, u, _, _ in seen["alice"]] == [("a1", "alice"), ("a2", "alice"), ("b1", "bob")]
    assert [int(o) for _, _, o, _ in seen["alice"]] == [1, 2, 3]
    assert len({e for _, _, _, e in seen["alice"]}) == 1 and seen["alice"][0][3]


def test_client_user_name_header_is_replaced(raw_tcp):
    """A user-name header sent by a client does not reach the room: the MESSAGE has exactly one user-name, the
    sender's login."""
    room = f"/room/{uid()}"
    sub = connect(raw_tcp, login="reader")
    mallory = connect(raw_tcp, login="mallory")
    join(sub, room)
    send(mallory, room, "spoof", {"user-name": "alice"})
    m = message(sub)
    names = [v for k, v in m.header_list if k == "user-name"]
    assert names == ["mallory"], f"user-name headers on the MESSAGE: {names}; frame {m!r}"


def test_anonymous_user_name_is_client_id_or_session(raw_tcp):
    """Without a login the user-name is the CONNECT client-id, else the session id (the CONNECTED session header;
    two anonymous sessions differ); the presence of the room lists an anonymous member under that same name."""
    room_name = uid()
    room = f"/room/{room_name}"
    cid = "cid-" + uid()
    sub = connect(raw_tcp, login="reader")
    with_cid = connect(raw_tcp, client_id=cid)
    anon1 = connect(raw_tcp)
    anon2 = connect(raw_tcp)
    join(sub, room)
    join(anon1, room, "a1")
    send(with_cid, room, "c")
    send(anon1, room, "x")
    send(anon2, room, "y")
    msgs = messages(sub, 3)
    names = [m.headers.get("user-name") for m in msgs]
    assert bodies(msgs) == ["c", "x", "y"]
    assert names[0] == cid, msgs[0]
    assert names[1] and names[2], f"anonymous senders without user-name: {msgs}"
    assert len(set(names)) == 3, f"user-names must differ per anonymous session: {names}"
    for c, name in ((anon1, names[1]), (anon2, names[2])):
        session = c.connected_frame.headers.get("session")
        if session:  # the CONNECTED frame names the session id: it is the anonymous user's name
            assert name == session, f"anonymous user-name {name!r} is not the session id {session!r}"
    watcher = connect(raw_tcp)
    state = watch(watcher, room_name)
    assert set(state["members"]) == {"reader", names[1]}, state
    assert state["count"] == 2, state


def test_room_over_websocket_raw(raw_ws, raw_tcp):
    """A WebSocket member receives what a TCP client sends to the room, with x-offset, x-epoch and user-name."""
    room = f"/room/{uid()}"
    member_ws = connect(raw_ws, login="wsuser")
    sender = connect(raw_tcp, login="tcpuser")
    _, receipt = join(member_ws, room)
    send(sender, room, "over ws")
    m = message(member_ws)
    assert m.body == b"over ws"
    assert m.headers.get("x-offset") == "1", m
    assert m.headers.get("x-epoch") == receipt.headers.get("x-epoch"), (m, receipt)
    assert m.headers.get("user-name") == "tcpuser", m


# ==================================================================================================
# history
# ==================================================================================================


def test_history_comes_before_receipt_then_live(raw_tcp):
    """x-history:3 in a room with 5 messages delivers offsets 3, 4, 5 (x-history:true, in order) before the
    RECEIPT, whose x-offset is 5 and x-epoch that of the messages; a later live message (offset 6) has no
    x-history header."""
    room = f"/room/{uid()}"
    pub = connect(raw_tcp, login="pub")
    for i in range(1, 6):
        send(pub, room, f"h{i}")
    sub = connect(raw_tcp, login="sub")
    before, receipt = join(sub, room, headers={"x-history": "3"})
    assert [f.command for f in before] == ["MESSAGE"] * 3, before
    assert offsets(before) == [3, 4, 5]
    assert bodies(before) == ["h3", "h4", "h5"]
    for m in before:
        assert m.headers.get("x-history") == "true", m
        assert m.headers.get("user-name") == "pub", m
        assert m.headers.get("subscription") == "s" and m.headers.get("destination") == room, m
    epoch = before[0].headers.get("x-epoch")
    assert epoch and all(m.headers.get("x-epoch") == epoch for m in before), before
    assert receipt.headers.get("x-epoch") == epoch, receipt
    assert receipt.headers.get("x-offset") == "5", receipt
    send(pub, room, "live")
    live = message(sub)
    assert live.body == b"live" and live.headers.get("x-offset") == "6", live
    assert "x-history" not in live.headers, live
    assert sub.drain(0.2) == []


def test_history_is_bounded_by_what_exists(raw_tcp):
    """x-history:50 in a room with 4 messages delivers those 4; a SUBSCRIBE without x-history delivers none
    (its RECEIPT still says x-offset:4)."""
    room = f"/room/{uid()}"
    pub = connect(raw_tcp)
    for i in range(1, 5):
        send(pub, room, f"h{i}")
    a = connect(raw_tcp)
    before, receipt = join(a, room, headers={"x-history": "50"})
    assert offsets(before) == [1, 2, 3, 4] and bodies(before) == ["h1", "h2", "h3", "h4"], before
    assert receipt.headers.get("x-offset") == "4", receipt
    b = connect(raw_tcp)
    before, receipt = join(b, room)
    assert before == [], before
    assert receipt.headers.get("x-offset") == "4", receipt


POLICY = """
[[policy]]
match = "/room/small.#"
history = 3

[[policy]]
match = "/room/small.#"
history = 50

[[policy]]
match = "/room/none.#"
history = 0

[[policy]]
match = "/room/brief.#"
history-ttl-ms = 1000
"""


def policy_server(own_server, tmp_path):
    cfg = tmp_path / "rooms.toml"
    cfg.write_text(POLICY)
    return own_server(["--config", str(cfg)])


def test_policy_history_limits_what_a_room_keeps(own_server, tmp_path, raw_tcp):
    """With a [[policy]] match="/room/small.#" history=3 (and a later one for the same pattern with history=50:
    the first match wins), a room there keeps only its last 3 messages (x-history:100 gives offsets 8, 9, 10 of
    10); a room no policy matches keeps all 10 (default 100)."""
    srv = policy_server(own_server, tmp_path)
    small, big = f"/room/small.{uid()}", f"/room/{uid()}"
    pub = connect(raw_tcp, srv)
    for i in range(1, 11):
        send(pub, small, f"s{i}")
        send(pub, big, f"b{i}")
    sub = connect(raw_tcp, srv)
    before, receipt = join(sub, small, "small", {"x-history": "100"})
    assert offsets(before) == [8, 9, 10] and bodies(before) == ["s8", "s9", "s10"], before
    assert receipt.headers.get("x-offset") == "10", receipt
    before, _ = join(sub, big, "big", {"x-history": "100"})
    assert offsets(before) == list(range(1, 11)), before


def test_policy_history_ttl(own_server, tmp_path, raw_tcp):
    """With history-ttl-ms=1000, kept messages are delivered as history at first but not 1.3 s later; a resume
    from before them is then x-recovered:false, a resume from the last offset (nothing missed) x-recovered:true."""
    srv = policy_server(own_server, tmp_path)
    room = f"/room/brief.{uid()}"
    member_ = connect(raw_tcp, srv, login="stays")  # keeps the room (and its epoch) alive
    join(member_, room)
    pub = connect(raw_tcp, srv)
    t_first = time.monotonic()
    for i in range(1, 4):
        send(pub, room, f"t{i}")
    early = connect(raw_tcp, srv)
    before, receipt = join(early, room, headers={"x-history": "10"})
    assert offsets(before) == [1, 2, 3], before
    epoch = receipt.headers["x-epoch"]
    assert time.monotonic() - t_first < 0.9, "too slow to check the history before history-ttl-ms passed"
    time.sleep(max(0.0, t_first + 1.3 - time.monotonic()))
    late = connect(raw_tcp, srv)
    before, receipt = join(late, room, "h", {"x-history": "10"})
    assert before == [], f"messages older than history-ttl-ms still delivered: {before}"
    assert receipt.headers.get("x-offset") == "3", receipt
    _, receipt = join(late, room, "r1", {"x-resume-from": f"{epoch}:1"})
    assert receipt.headers.get("x-recovered") == "false", receipt
    _, receipt = join(late, room, "r3", {"x-resume-from": f"{epoch}:3"})
    assert receipt.headers.get("x-recovered") == "true", receipt


def test_forgotten_room_starts_a_new_epoch(own_server, tmp_path, raw_tcp):
    """A room that keeps nothing (policy history=0) is forgotten when its last member leaves: joining again gives a
    new x-epoch with x-offset:0, offsets restart at 1, x-history delivers nothing, and resuming from the old epoch
    is x-recovered:false."""
    srv = policy_server(own_server, tmp_path)
    room = f"/room/none.{uid()}"
    a = connect(raw_tcp, srv, login="alice")
    _, receipt = join(a, room, "r1")
    old = receipt.headers["x-epoch"]
    send(a, room, "one")
    send(a, room, "two")
    assert offsets(messages(a, 2, "r1")) == [1, 2]
    a.send_frame("UNSUBSCRIBE", [("id", "r1")])
    sync(a)
    b = connect(raw_tcp, srv, login="bob")
    before, receipt = join(b, room, "h", {"x-history": "10"})
    assert before == [], f"a room with history=0 delivered history: {before}"
    assert receipt.headers.get("x-epoch") != old, f"same epoch after the room was empty and forgotten: {receipt!r}"
    assert receipt.headers.get("x-offset") == "0", receipt
    _, receipt = join(b, room, "r", {"x-resume-from": f"{old}:2"})
    assert receipt.headers.get("x-recovered") == "false", receipt
    send(b, room, "three")
    m = message(b, "h")
    assert m.headers.get("x-offset") == "1" and m.headers.get("x-epoch") != old, m


def test_memory_storage_restart_starts_a_new_epoch(tmp_path):
    """With storage=memory (a server without a store) nothing survives a restart: the room has a new epoch, no
    history, and a resume from the old epoch is x-recovered:false."""
    extra = ["--set", "storage=memory"]
    srv = StarlingServer(tmp_path, extra).start()
    clients = []
    try:
        room = f"/room/{uid()}"
        a = RawTcpStomp(srv.stomp_port)
        clients.append(a)
        assert a.connect().command == "CONNECTED"
        for i in range(3):
            send(a, room, f"m{i}")
        _, receipt = join(a, room)
        old = receipt.headers["x-epoch"]
        assert receipt.headers.get("x-offset") == "3", receipt
        a.close()
        srv.stop()
        srv = StarlingServer(tmp_path, extra).start()
        b = RawTcpStomp(srv.stomp_port)
        clients.append(b)
        assert b.connect().command == "CONNECTED"
        before, receipt = join(b, room, headers={"x-resume-from": f"{old}:3", "x-history": "10"})
        assert receipt.headers.get("x-recovered") == "false", receipt
        assert receipt.headers.get("x-epoch") != old and receipt.headers.get("x-offset") == "0", receipt
        assert before == [], before
    finally:
        for c in clients:
            c.close()
        srv.stop()


# ==================================================================================================
# resume
# ==================================================================================================


def test_resume_delivers_exactly_the_missed_messages(raw_tcp):
    """A member sees offsets 1-3 and disconnects; 4 more are sent; a new session with x-resume-from:<epoch>:3
    (and x-history:1, which the resume overrides) gets exactly 4-7 (x-history:true) before a RECEIPT with
    x-recovered:true, x-offset:7 and the same epoch, then the live 8 and 9 without x-history: no gap, no duplicate."""
    room = f"/room/{uid()}"
    pub = connect(raw_tcp, login="pub")
    s1 = connect(raw_tcp, login="carol")
    _, receipt = join(s1, room)
    epoch = receipt.headers["x-epoch"]
    for i in range(1, 4):
        send(pub, room, f"m{i}")
    assert offsets(messages(s1, 3)) == [1, 2, 3]
    s1.send_frame("DISCONNECT", [("receipt", "bye")])
    s1.wait_closed(T)
    for i in range(4, 8):
        send(pub, room, f"m{i}")
    s2 = connect(raw_tcp, login="carol")
    before, receipt = join(s2, room, headers={"x-resume-from": f"{epoch}:3", "x-history": "1"})
    assert [f.command for f in before] == ["MESSAGE"] * 4, before
    assert offsets(before) == [4, 5, 6, 7] and bodies(before) == ["m4", "m5", "m6", "m7"], before
    assert all(m.headers.get("x-history") == "true" and m.headers.get("x-epoch") == epoch for m in before), before
    assert receipt.headers.get("x-recovered") == "true", receipt
    assert receipt.headers.get("x-offset") == "7", receipt
    assert receipt.headers.get("x-epoch") == epoch, receipt
    send(pub, room, "m8")
    send(pub, room, "m9")
    live = messages(s2, 2)
    assert offsets(live) == [8, 9] and bodies(live) == ["m8", "m9"], live
    assert all("x-history" not in m.headers for m in live), live
    assert s2.drain(0.2) == []


def test_resume_at_the_tip_over_websocket(raw_ws, raw_tcp):
    """Over WebSocket, resuming from the last offset of the room (nothing missed) delivers no history, the RECEIPT
    says x-recovered:true, and the next live message follows."""
    room = f"/room/{uid()}"
    pub = connect(raw_tcp)
    for i in range(1, 4):
        send(pub, room, f"m{i}")
    probe = connect(raw_ws)
    _, receipt = join(probe, room, "probe")
    epoch = receipt.headers["x-epoch"]
    sub = connect(raw_ws, login="ws-resumer")
    before, receipt = join(sub, room, headers={"x-resume-from": f"{epoch}:3"})
    assert before == [], before
    assert receipt.headers.get("x-recovered") == "true", receipt
    send(pub, room, "m4")
    m = message(sub)
    assert m.body == b"m4" and m.headers.get("x-offset") == "4" and "x-history" not in m.headers, m


def test_resume_while_messages_keep_flowing(raw_tcp):
    """A publisher sends 300 messages (with receipts) while a member reads some, loses its TCP connection
    abruptly and resumes from the last offset it saw on a new connection: the second session gets history
    (x-history:true, offsets up to the RECEIPT's x-offset) then live messages, and the offsets of both sessions
    together are exactly 1..300, each once. A newcomer joining meanwhile with x-history:30 gets the 30 offsets up
    to its RECEIPT's x-offset, then every later one, once."""
    room = f"/room/{uid()}"
    n = 300
    s1 = connect(raw_tcp, login="flow")
    _, receipt = join(s1, room)
    epoch = receipt.headers["x-epoch"]
    pub = connect(raw_tcp, login="publisher")
    errors: list[BaseException] = []

    def publish():
        try:
            for i in range(1, n + 1):
                pub.send_frame("SEND", [("destination", room), ("receipt", f"p{i}")], f"f{i}")
                if i % 20 == 0:
                    rx(pub, lambda f, i=i: f.command == "RECEIPT" and f.headers.get("receipt-id") == f"p{i}",
                       what=f"RECEIPT p{i}")
                    pub.pending.clear()
                time.sleep(0.004)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=publish, daemon=True)
    t.start()
    try:
        first = messages(s1, 40, timeout=10)
        s1.close()  # abrupt: no DISCONNECT
        seen1 = offsets(first)
        assert seen1 == list(range(1, 41)), seen1
        last = seen1[-1]
        s2 = connect(raw_tcp, login="flow")
        before, receipt = join(s2, room, headers={"x-resume-from": f"{epoch}:{last}"})
        assert receipt.headers.get("x-recovered") == "true", receipt
        upto = int(receipt.headers["x-offset"])
        assert upto < n, "the publisher had finished before the resume (not a resume while messages flow)"
        assert all(f.command == "MESSAGE" for f in before), before
        history = offsets(before)
        assert history == list(range(last + 1, upto + 1)), f"history {history}, RECEIPT x-offset {upto}"
        assert all(f.headers.get("x-history") == "true" for f in before), before
        # a newcomer asking for x-history while messages flow: history then live, contiguous
        s3 = connect(raw_tcp, login="newcomer")
        before3, receipt3 = join(s3, room, headers={"x-history": "30"})
        upto3 = int(receipt3.headers["x-offset"])
        assert upto < n and upto3 < n, "the publisher finished before the newcomer joined"
        assert offsets(before3) == list(range(max(1, upto3 - 29), upto3 + 1)), (offsets(before3), upto3)
        live = []
        deadline = time.monotonic() + 15
        while upto + len(live) < n:
            assert time.monotonic() < deadline, f"stuck after live offsets {offsets(live)[-5:]}"
            m = message(s2, timeout=max(0.001, deadline - time.monotonic()))
            assert "x-history" not in m.headers, f"x-history on a live message after the RECEIPT: {m!r}"
            assert m.headers.get("x-epoch") == epoch, m
            live.append(m)
    finally:
        t.join(20)
    assert not t.is_alive(), "publisher thread did not finish"
    assert not errors, errors
    everything = seen1 + history + offsets(live)
    assert sorted(everything) == list(range(1, n + 1)), "gap or duplicate in the offsets"
    assert len(everything) == len(set(everything)) == n
    assert offsets(live) == list(range(upto + 1, n + 1))
    assert s2.drain(0.2) == []
    live3 = messages(s3, n - upto3)
    assert offsets(live3) == list(range(upto3 + 1, n + 1)), "gap or duplicate after an x-history join"
    assert all("x-history" not in m.headers for m in live3)


def test_resume_past_the_history_window_is_not_recovered(own_server, tmp_path, raw_tcp):
    """In a room keeping 3 messages (policy), offsets 1-12 exist and 10-12 are kept: resuming from 2 or 8 is
    x-recovered:false on the RECEIPT and on the first MESSAGE the subscription receives; resuming from 9 (all of
    10-12 kept) is x-recovered:true and delivers 10, 11, 12."""
    srv = policy_server(own_server, tmp_path)
    room = f"/room/small.{uid()}"
    pub = connect(raw_tcp, srv, login="pub")
    s1 = connect(raw_tcp, srv, login="dave")
    _, receipt = join(s1, room)
    epoch = receipt.headers["x-epoch"]
    send(pub, room, "m1")
    send(pub, room, "m2")
    assert offsets(messages(s1, 2)) == [1, 2]
    s1.close()
    for i in range(3, 13):
        send(pub, room, f"m{i}")
    # 1-12 exist, 10-12 are kept: everything after 9 is still there
    s9 = connect(raw_tcp, srv, login="dave")
    before, receipt = join(s9, room, headers={"x-resume-from": f"{epoch}:9"})
    assert receipt.headers.get("x-recovered") == "true", receipt
    assert offsets(before) == [10, 11, 12], before
    assert all(m.headers.get("x-recovered") != "false" for m in before), before
    for frm in (8, 2):  # message 9 (and more) is gone
        s = connect(raw_tcp, srv, login="dave")
        before, receipt = join(s, room, headers={"x-resume-from": f"{epoch}:{frm}"})
        assert receipt.headers.get("x-recovered") == "false", (frm, receipt)
        if before:
            first = before[0]
        else:
            send(pub, room, f"live-after-{frm}")
            first = message(s)
        assert first.headers.get("x-recovered") == "false", f"first MESSAGE after a lost resume from {frm}: {first!r}"


@pytest.mark.parametrize("with_receipt", [True, False], ids=["receipt", "no-receipt"])
def test_resume_from_another_epoch_is_not_recovered(raw_tcp, with_receipt):
    """x-resume-from with an epoch the room never had is not recoverable: the RECEIPT (if asked for) says
    x-recovered:false, and the first MESSAGE of the subscription says so too (for clients without receipts)."""
    room = f"/room/{uid()}"
    pub = connect(raw_tcp)
    send(pub, room, "m1")
    send(pub, room, "m2")
    sub = connect(raw_tcp, login="eve")
    resume = {"x-resume-from": f"nope{uid()}:1"}
    if with_receipt:
        before, receipt = join(sub, room, headers=resume)
        assert receipt.headers.get("x-recovered") == "false", receipt
    else:
        sub.send_frame("SUBSCRIBE", [("destination", room), ("id", "s"), *resume.items()])
        sync(sub)
    send(pub, room, "live")
    first = message(sub)
    assert first.headers.get("x-recovered") == "false", f"first MESSAGE after an unrecoverable resume: {first!r}"


# ==================================================================================================
# bad destinations
# ==================================================================================================


BAD = [(c, d) for d in ("/room/", "/room/a*b", "/room/a/b", "/room/a#b", "/room/a\tb") for c in ("SUBSCRIBE", "SEND")]


@pytest.mark.parametrize("command,dest", BAD + [("SUBSCRIBE", "/presence/a/b")])
def test_bad_room_destination_is_an_error(raw_tcp, command, dest):
    """A room (or presence) destination with an empty name or a '*', '#', '/' or control character in it gets an
    ERROR naming the destination, and the server keeps serving other clients."""
    c = connect(raw_tcp)
    headers = [("destination", dest), ("receipt", "bad")] + ([("id", "x")] if command == "SUBSCRIBE" else [])
    c.send_frame(command, headers, b"body" if command == "SEND" else b"")
    f = rx(c, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR", f"{command} to {dest!r} accepted: {f!r}"
    text = f.headers.get("message", "") + " " + f.body.decode("utf-8", "replace")
    # Control characters are quoted as \xNN in ERROR messages (they could end the frame or reach a terminal).
    printable = "".join(f"\\x{ord(ch):02X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in dest)
    assert printable in text, f"ERROR does not name {dest!r}: {f!r}"
    other = connect(raw_tcp)
    room = f"/room/{uid()}"
    join(other, room)
    send(other, room, "still here")
    assert message(other).body == b"still here"


def test_room_name_length_limit(raw_tcp):
    """A room name of 200 bytes works; 201 bytes gets an ERROR, and so do 101 two-byte characters (202 bytes)."""
    ok = uid().ljust(200, "x")
    c = connect(raw_tcp)
    join(c, f"/room/{ok}")
    send(c, f"/room/{ok}", "long name")
    assert message(c).headers.get("destination") == f"/room/{ok}"
    d = connect(raw_tcp)
    d.send_frame("SUBSCRIBE", [("destination", f"/room/{ok}y"), ("id", "x"), ("receipt", "long")])
    f = rx(d, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR", f"201-byte room name accepted: {f!r}"
    e = connect(raw_tcp)
    e.send_frame("SUBSCRIBE", [("destination", "/room/" + "\u00e9" * 101), ("id", "x"), ("receipt", "utf8")])
    f = rx(e, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR", f"room name of 202 UTF-8 bytes (101 characters) accepted: {f!r}"


@pytest.mark.parametrize("header,value", [("x-resume-from", "no-offset"), ("x-resume-from", "e:abc"),
                                          ("x-history", "-1"), ("x-history", "many")])
def test_malformed_history_headers(raw_tcp, header, value):
    """A malformed x-resume-from or x-history is refused with an ERROR, or (x-resume-from) answered as not
    recoverable; either way the server keeps serving."""
    c = connect(raw_tcp)
    room = f"/room/{uid()}"
    c.send_frame("SUBSCRIBE", [("destination", room), ("id", "x"), ("receipt", "bad"), (header, value)])
    f = rx(c, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR or RECEIPT")
    if f.command == "RECEIPT":
        assert header == "x-resume-from" and f.headers.get("x-recovered") == "false", \
            f"malformed {header}:{value} accepted: {f!r}"
    other = connect(raw_tcp)
    join(other, room)
    send(other, room, "fine")
    assert message(other).body == b"fine"
