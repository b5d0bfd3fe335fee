"""Presence (docs/rooms.md): SUBSCRIBE ``/presence/<name>`` gives a ``state`` MESSAGE then ``diff`` MESSAGEs (joins /
leaves / updates) in JSON, or ``count`` MESSAGEs in ``x-presence-mode:count``; a SEND there updates the session's
metadata. Every test uses its own room names (``uid()``), so they can share one server.
"""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from e2e_helpers import uid
from room_helpers import T, connect, join, member, message, next_diff, presence, py_client, py_join, rx, send, sync, until_receipt, watch


# ==================================================================================================
# presence
# ==================================================================================================


def test_presence_state_lists_members_with_meta(raw_tcp):
    """SUBSCRIBE to /presence/<room> first gets an x-presence:state MESSAGE (JSON, x-presence-count) listing each
    member with its connections and the meta from the x-presence-* headers of its room SUBSCRIBE."""
    name = uid()
    alice = connect(raw_tcp, login="alice")
    bob = connect(raw_tcp, login="bob")
    join(alice, f"/room/{name}", headers={"x-presence-status": "online", "x-presence-device": "phone"})
    join(bob, f"/room/{name}")
    watcher = connect(raw_tcp)
    state = watch(watcher, name)
    assert state == {"count": 2, "members": {"alice": member({"status": "online", "device": "phone"}),
                                             "bob": member({})}}, state


def test_presence_join_diff_stomp_py_websocket(stomp_client):
    """A stomp.py WebSocket watcher gets the state (content-type application/json) and then, when a second user
    joins over TCP, an x-presence:diff with that user in "joins" and x-presence-count:2."""
    name = uid()
    alice, alog = py_client(stomp_client, "tcp", "alice")
    py_join(alice, alog, f"/room/{name}", "r", {"x-presence-status": "online"})
    w, wlog = py_client(stomp_client, "ws", "watcher")
    py_join(w, wlog, f"/presence/{name}", "p")
    (state,) = wlog.messages("p", 1)
    assert state.headers.get("x-presence") == "state", state.headers
    assert state.headers.get("content-type", "").startswith("application/json"), state.headers
    assert state.headers.get("x-presence-count") == "1", state.headers
    assert json.loads(state.body) == {"count": 1, "members": {"alice": member({"status": "online"})}}
    carol, clog = py_client(stomp_client, "tcp", "carol")
    py_join(carol, clog, f"/room/{name}", "r", {"x-presence-status": "away"})
    diff = wlog.messages("p", 2)[1]
    assert diff.headers.get("x-presence") == "diff", diff.headers
    assert diff.headers.get("x-presence-count") == "2", diff.headers
    assert json.loads(diff.body) == {"count": 2, "joins": {"carol": member({"status": "away"})},
                                     "leaves": {}, "updates": {}}


def test_one_user_in_several_sessions_is_one_member(raw_tcp):
    """alice joining from a second session is no join (no diff; a fresh state shows count 1, connections 2);
    her first session leaving is no leave; only when her last connection leaves does a diff list her in
    "leaves". Diffs come in order without gap, so bob's join proves nothing came in between."""
    name = uid()
    room = f"/room/{name}"
    w = connect(raw_tcp)
    assert watch(w, name) == {"count": 0, "members": {}}
    a1 = connect(raw_tcp, login="alice")
    join(a1, room, headers={"x-presence-status": "online"})
    d = next_diff(w)
    assert d == {"count": 1, "joins": {"alice": member({"status": "online"})}, "leaves": {}, "updates": {}}, d
    a2 = connect(raw_tcp, login="alice")
    join(a2, room, headers={"x-presence-status": "online"})
    w2 = connect(raw_tcp)
    assert watch(w2, name) == {"count": 1, "members": {"alice": member({"status": "online"}, 2)}}
    a1.send_frame("UNSUBSCRIBE", [("id", "s"), ("receipt", "u1")])
    until_receipt(a1, "u1")
    bob = connect(raw_tcp, login="bob")
    join(bob, room)
    d = next_diff(w)
    assert d["joins"].keys() == {"bob"} and not d["leaves"] and d["count"] == 2, \
        f"expected bob's join as the next diff (nothing for alice's second session coming or going): {d}"
    a2.close()
    d = next_diff(w)
    assert d["leaves"].keys() == {"alice"} and not d["joins"] and d["count"] == 1, d


def test_two_subscriptions_of_one_session_and_latest_meta(raw_tcp):
    """Two room SUBSCRIBEs of one session are two connections of one member whose meta is that of the most
    recent join; a presence update from that session changes the member's meta ("updates" diff); only when
    both subscriptions are gone does the member leave."""
    name = uid()
    room = f"/room/{name}"
    w = connect(raw_tcp)
    watch(w, name)
    alice = connect(raw_tcp, login="alice")
    join(alice, room, "r1", {"x-presence-status": "online"})
    assert next_diff(w)["joins"] == {"alice": member({"status": "online"})}
    join(alice, room, "r2", {"x-presence-status": "busy"})
    w2 = connect(raw_tcp)
    assert watch(w2, name) == {"count": 1, "members": {"alice": member({"status": "busy"}, 2)}}
    send(alice, f"/presence/{name}", headers={"x-presence-typing": "true"})
    while True:  # the second join may itself have been reported as an update of alice's meta
        d = next_diff(w)
        assert not d["joins"] and not d["leaves"], d
        if d["updates"].get("alice", {}).get("meta", {}).get("typing"):
            break
    assert d["updates"] == {"alice": member({"status": "busy", "typing": "true"}, 2)}, d
    alice.send_frame("UNSUBSCRIBE", [("id", "r1")])
    sync(alice)
    bob = connect(raw_tcp, login="bob")
    join(bob, room)
    d = next_diff(w)
    assert d["joins"].keys() == {"bob"} and not d["leaves"], f"expected bob's join, alice still in: {d}"
    alice.send_frame("UNSUBSCRIBE", [("id", "r2")])
    d = next_diff(w)
    assert d["leaves"].keys() == {"alice"} and d["count"] == 1, d


@pytest.mark.parametrize("how", ["unsubscribe", "disconnect", "socket-close", "websocket-close"])
def test_leave(raw_tcp, raw_ws, how):
    """A member leaves the presence (diff with it in "leaves", count 0) on UNSUBSCRIBE, on DISCONNECT and when
    its TCP connection or its WebSocket just closes."""
    name = uid()
    alice = connect(raw_ws if how == "websocket-close" else raw_tcp, login="alice")
    join(alice, f"/room/{name}", "room")
    w = connect(raw_tcp)
    assert watch(w, name)["members"].keys() == {"alice"}
    if how == "unsubscribe":
        alice.send_frame("UNSUBSCRIBE", [("id", "room")])
    elif how == "disconnect":
        alice.send_frame("DISCONNECT", [("receipt", "bye")])
    else:
        alice.close()
    d = next_diff(w)
    assert d["leaves"].keys() == {"alice"} and not d["joins"] and not d["updates"], d
    assert d["count"] == 0, d


def test_leave_on_heartbeat_timeout(fast_heartbeat_server, raw_tcp):
    """A member that promised heart-beats (heart-beat:200,0) and then stays silent is dropped by the heart-beat
    timeout, and the presence reports it in "leaves"."""
    srv = fast_heartbeat_server
    name = uid()
    w = connect(raw_tcp, srv)
    watch(w, name)
    silent = connect(raw_tcp, srv, login="sleepy", heart_beat="200,0")
    join(silent, f"/room/{name}")
    d = next_diff(w)
    assert d["joins"].keys() == {"sleepy"}, d
    t0 = time.monotonic()
    d = next_diff(w, timeout=5)
    assert d["leaves"].keys() == {"sleepy"} and d["count"] == 0, d
    assert time.monotonic() - t0 < 5
    silent.wait_closed(T)


def test_metadata_update_via_send(raw_tcp):
    """SEND to /presence/<room> with x-presence-typing:true from a member gives an "updates" diff with the merged
    meta; an empty value removes the key again; a fresh state shows the current meta."""
    name = uid()
    alice = connect(raw_tcp, login="alice")
    join(alice, f"/room/{name}", headers={"x-presence-status": "online"})
    w = connect(raw_tcp)
    watch(w, name)
    send(alice, f"/presence/{name}", headers={"x-presence-typing": "true"})
    d = next_diff(w)
    assert d == {"count": 1, "joins": {}, "leaves": {},
                 "updates": {"alice": member({"status": "online", "typing": "true"})}}, d
    w2 = connect(raw_tcp)
    assert watch(w2, name)["members"] == {"alice": member({"status": "online", "typing": "true"})}
    send(alice, f"/presence/{name}", headers={"x-presence-typing": ""})
    d = next_diff(w)
    assert d["updates"] == {"alice": member({"status": "online"})}, d


def test_presence_update_without_change_gives_no_diff(raw_tcp):
    """A presence SEND that changes nothing (the same value again, or no x-presence-* header at all) publishes no
    "updates" diff: the next diff the watcher gets is that of a real change."""
    name = uid()
    alice = connect(raw_tcp, login="alice")
    join(alice, f"/room/{name}", headers={"x-presence-status": "online"})
    w = connect(raw_tcp)
    watch(w, name)
    send(alice, f"/presence/{name}", headers={"x-presence-status": "online"})
    send(alice, f"/presence/{name}")
    send(alice, f"/presence/{name}", headers={"x-presence-status": "away"})
    d = next_diff(w)
    assert d["updates"] == {"alice": member({"status": "away"})}, \
        f"expected the change to away as the first diff (no diff for updates that change nothing): {d}"


def test_presence_send_from_non_member_is_an_error(raw_tcp):
    """A SEND to /presence/<room> from a session that is not in the room gets an ERROR (also when the same user
    is in the room from another session); no diff is published, and a member's update still works afterwards."""
    name = uid()
    alice = connect(raw_tcp, login="alice")
    join(alice, f"/room/{name}")
    w = connect(raw_tcp)
    watch(w, name)
    bob = connect(raw_tcp, login="bob")
    bob.send_frame("SEND", [("destination", f"/presence/{name}"), ("receipt", "upd"),
                            ("x-presence-typing", "true")])
    f = rx(bob, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR", f"non-member presence update accepted: {f!r}"
    alice2 = connect(raw_tcp, login="alice")  # same user, but this session is not in the room
    alice2.send_frame("SEND", [("destination", f"/presence/{name}"), ("receipt", "upd2"),
                               ("x-presence-typing", "true")])
    f = rx(alice2, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR", f"presence update from a session that is not in the room accepted: {f!r}"
    send(alice, f"/presence/{name}", headers={"x-presence-typing": "true"})
    d = next_diff(w)
    assert d["updates"].keys() == {"alice"} and not d["joins"], d


def test_presence_metadata_is_bounded(raw_tcp):
    """Presence metadata is limited (presence-max-meta-bytes, default 1024 bytes of keys and values, announced in
    CONNECTED): a SUBSCRIBE or a SEND carrying more gets an ERROR, and so does a SEND whose keys would grow the
    merged metadata past it; the member's metadata is unchanged and the server keeps serving."""
    name = uid()
    big = "x" * 1100
    c = connect(raw_tcp, login="alice")
    c.send_frame("SUBSCRIBE", [("destination", f"/room/{name}"), ("id", "s"), ("receipt", "j"), ("x-presence-bio", big)])
    f = rx(c, lambda f: f.command in ("ERROR", "RECEIPT"), what="ERROR")
    assert f.command == "ERROR" and "presence-max-meta-bytes" in f.headers.get("message", ""), f
    c = connect(raw_tcp, login="alice")
    join(c, f"/room/{name}", headers={"x-presence-status": "online"})
    w = connect(raw_tcp)
    state = watch(w, name)
    assert state["members"]["alice"]["meta"] == {"status": "online"}
    for i in range(3):  # 3 x 400 bytes: the third would make it 1,200 bytes
        c.send_frame("SEND", [("destination", f"/presence/{name}"), ("receipt", f"u{i}"), (f"x-presence-k{i}", "v" * 396)])
        f = rx(c, lambda f: f.command in ("ERROR", "RECEIPT"), what=f"answer to update {i}")
        if i < 2:
            assert f.command == "RECEIPT", f
        else:
            assert f.command == "ERROR" and "presence-max-meta-bytes" in f.headers.get("message", ""), f
    diffs = [next_diff(w), next_diff(w)]
    assert set(diffs[-1]["updates"]["alice"]["meta"]) == {"status", "k0", "k1"}, diffs
    # The ERROR closed alice's connection: she leaves, and nothing else was changed.
    assert next_diff(w)["leaves"].keys() == {"alice"}


def _replay(state, diffs) -> dict:
    """Applies presence diffs to a state; returns {user: meta}. Checks each diff's count."""
    members = {u: v["meta"] for u, v in state["members"].items()}
    for d in diffs:
        for u in d["leaves"]:
            assert u in members, f"leave of {u!r}, who is not a member: {d}"
            del members[u]
        for u, v in d["joins"].items():
            assert u not in members, f"join of {u!r}, who already is a member: {d}"
            members[u] = v["meta"]
        for u, v in d["updates"].items():
            assert u in members, f"update of {u!r}, who is not a member: {d}"
            members[u] = v["meta"]
        assert d["count"] == len(members), f"count {d['count']} but {len(members)} members after {d}"
    return members


def test_presence_diffs_stay_consistent_under_churn(raw_tcp):
    """While 16 sessions of 8 users join, leave and update their meta concurrently (4 threads), a watcher that
    subscribed before and one that subscribed in the middle each end up, applying their diffs to their state, with
    exactly the members and meta of a fresh state, whose connections match the sessions still in the room."""
    name = uid()
    room = f"/room/{name}"
    w1 = connect(raw_tcp)
    state1 = watch(w1, name)
    sessions = [[(f"c{k}{u}", connect(raw_tcp, login=f"c{k}{u}")) for u in "ab" for _ in range(2)] for k in range(4)]
    joined: dict[int, bool] = {}
    errors: list[BaseException] = []
    half = threading.Barrier(5, timeout=10)

    def churn(k, group):
        rnd = random.Random(k)
        try:
            for step in range(80):
                if step == 40:
                    half.wait()
                _, c = group[rnd.randrange(len(group))]
                if not joined.get(id(c)):
                    c.send_frame("SUBSCRIBE", [("destination", room), ("id", "r"), ("x-presence-n", f"{k}.{step}")])
                    joined[id(c)] = True
                elif rnd.random() < 0.5:
                    c.send_frame("UNSUBSCRIBE", [("id", "r")])
                    joined[id(c)] = False
                else:
                    c.send_frame("SEND", [("destination", f"/presence/{name}"), ("x-presence-n", f"{k}.{step}u")])
            for _, c in group:
                sync(c)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(k, g), daemon=True) for k, g in enumerate(sessions)]
    for t in threads:
        t.start()
    half.wait()
    w2 = connect(raw_tcp)
    state2 = watch(w2, name)
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "churn threads did not finish"
    assert not errors, errors
    marker = connect(raw_tcp, login="zz-marker")
    join(marker, room)
    replays = []
    for w, state in ((w1, state1), (w2, state2)):
        diffs = []
        while not diffs or "zz-marker" not in diffs[-1]["joins"]:
            diffs.append(next_diff(w))
        replays.append(_replay(state, diffs))
    fresh = watch(connect(raw_tcp), name)
    assert fresh["count"] == len(fresh["members"])
    expected = {"zz-marker": 1}
    for group in sessions:
        for user, c in group:
            if joined.get(id(c)):
                expected[user] = expected.get(user, 0) + 1
    assert {u: v["connections"] for u, v in fresh["members"].items()} == expected
    assert replays[0] == {u: v["meta"] for u, v in fresh["members"].items()}, (replays[0], fresh)
    assert replays[1] == replays[0], "the watcher that subscribed during the churn disagrees"


def test_presence_count_mode(raw_tcp):
    """x-presence-mode:count gives a state {"count": N} without members, then x-presence:count MESSAGEs
    {"count": N} (with x-presence-count), at most one per second and only when the count changed (a join and a
    leave within one second send nothing)."""
    name = uid()
    room = f"/room/{name}"
    first = connect(raw_tcp, login="u0")
    join(first, room)
    w = connect(raw_tcp)
    assert watch(w, name, headers={"x-presence-mode": "count"}) == {"count": 1}
    t_state = time.monotonic()
    for i in range(1, 4):
        join(connect(raw_tcp, login=f"u{i}"), room)
    counts = []
    deadline = time.monotonic() + 3.5
    while not counts or counts[-1][1] != 4:
        assert time.monotonic() < deadline, f"no count message with count 4; got {counts}"
        m = message(w, "p", max(0.001, deadline - time.monotonic()))
        body = presence(m, "count")
        assert body.keys() == {"count"}, body
        counts.append((time.monotonic(), body["count"]))
    values = [1] + [c for _, c in counts]
    assert all(a != b for a, b in zip(values, values[1:])), f"count message without a change: {values}"
    gaps = [b - a for (a, _), (b, _) in zip(counts, counts[1:])]
    assert counts[-1][0] - t_state < 3.0
    assert all(g >= 0.85 for g in gaps), f"count messages closer than a second apart: {gaps}"
    # right after a count message, one more user joins and leaves: at the next tick the count is what was last
    # reported, so nothing is sent
    brief = connect(raw_tcp, login="u5")
    join(brief, room)
    brief.close()
    later = w.drain(2.2)
    assert later == [], f"count messages although the count is back to 4: {[f.body for f in later]}"
