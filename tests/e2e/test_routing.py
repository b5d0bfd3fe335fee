"""Topic wildcard routing: ``*`` matches exactly one word, ``#`` zero or more words (words split on '.')."""

from __future__ import annotations

import time

import pytest

from e2e_helpers import subscribe_sync, uid

# (pattern, topics that must match, topics that must not). "P" is replaced by a unique word so that
# tests on the shared server do not see each other's traffic.
CASES = [
    ("P.*", ["P.a", "P.bb"], ["P", "P.a.b", "Q.a", "PP.a"]),
    ("P.#", ["P", "P.a", "P.a.b.c"], ["Q.a", "PP", "PP.a", "xP.a"]),
    ("P.*.z", ["P.a.z", "P.bb.z"], ["P.z", "P.a.b.z", "P.a.zz", "P.a.z.q"]),
    ("P.#.z", ["P.z", "P.a.z", "P.a.b.z"], ["P.a", "P.a.zz", "P.z.a"]),
    ("*.P", ["a.P", "bb.P"], ["P", "a.b.P", "a.PP"]),
    ("#.P", ["P", "a.P", "a.b.c.P"], ["P.a", "a.PP", "aP"]),
    ("P.*.*", ["P.a.b"], ["P.a", "P.a.b.c"]),
    ("P.a", ["P.a"], ["P.ab", "P.a.b", "P", "P.A"]),
]


@pytest.mark.parametrize("pattern,match,nomatch", CASES, ids=[c[0] for c in CASES])
def test_wildcard_routing(stomp_client, pattern, match, nomatch):
    """A wildcard subscription receives exactly the messages whose destination matches its pattern, and
    each MESSAGE carries the concrete destination it was sent to."""
    p = uid()
    sub, col = stomp_client("tcp")
    pub, pcol = stomp_client("tcp")
    subscribe_sync(sub, col, "/topic/" + pattern.replace("P", p), "w")
    sent = [(t, True) for t in match] + [(t, False) for t in nomatch]
    for i, (t, _) in enumerate(sent):
        pub.send(destination="/topic/" + t.replace("P", p), body=t, receipt=f"r{i}")
    for i in range(len(sent)):
        pcol.wait_receipt(f"r{i}")
    col.wait_messages(len(match))
    time.sleep(0.3)  # give non-matching messages a chance to (wrongly) arrive
    got = sorted(m.body for m in col.messages)
    assert got == sorted(match), f"pattern {pattern}: expected {sorted(match)}, got {got}"
    for m in col.messages:
        assert m.headers["destination"] == "/topic/" + m.body.replace("P", p)
        assert m.headers["subscription"] == "w"
    assert not pcol.errors and not col.errors


def test_wildcard_over_websocket(stomp_client):
    """Wildcard subscriptions work the same for a WebSocket subscriber fed by a TCP publisher."""
    p = uid()
    sub, col = stomp_client("ws")
    pub, _ = stomp_client("tcp")
    subscribe_sync(sub, col, f"/topic/{p}.#", "all")
    subscribe_sync(sub, col, f"/topic/{p}.*.price", "px")
    pub.send(destination=f"/topic/{p}.eur.price", body="1")
    pub.send(destination=f"/topic/{p}.eur.volume", body="2")
    col.wait_messages(3)
    time.sleep(0.2)
    subs = sorted((m.headers["subscription"], m.body) for m in col.messages)
    assert subs == [("all", "1"), ("all", "2"), ("px", "1")]
