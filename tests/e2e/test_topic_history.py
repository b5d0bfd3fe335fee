"""Topics with a history policy (docs/rooms.md, "Topics with history"): their MESSAGEs carry x-offset and x-epoch,
an exact-name SUBSCRIBE may ask for x-history or x-resume-from, and the history survives a restart."""

from __future__ import annotations

import time

from e2e_helpers import StarlingServer, stomp_close, uid
from test_room_persistence import connect, subscribe


def test_topic_history_and_resume(tmp_path):
    """Only topics a policy covers get offsets; x-history gives their last messages before live ones; a wildcard
    subscription gets live messages (with offsets) and no history; a resume works across a restart."""
    config = tmp_path / "starling.toml"
    config.write_text('[[policy]]\nmatch = "/topic/hist.#"\nhistory = 5\n')
    data = tmp_path / "data"
    topic = f"hist.{uid()}"
    srv = StarlingServer(data, ["--config", str(config)]).start()
    try:
        alice, acol = connect(srv, "alice")
        subscribe(alice, acol, "/topic/hist.*", "wild", **{"x-history": "10"})
        for i in range(7):
            alice.send(destination=f"/topic/{topic}", body=f"m{i}", headers={"receipt": f"s{i}"})
        acol.wait_receipt("s6")
        acol.wait_messages(7)
        assert [m.headers["x-offset"] for m in acol.messages] == [str(i) for i in range(1, 8)]
        assert all("x-history" not in m.headers and m.headers["user-name"] == "alice" for m in acol.messages)
        epoch = acol.messages[0].headers["x-epoch"]

        bob, bcol = connect(srv, "bob")
        headers = subscribe(bob, bcol, f"/topic/{topic}", "h", **{"x-history": "3"})
        assert headers["x-epoch"] == epoch and headers["x-offset"] == "7"
        assert [(m.body, m.headers.get("x-history")) for m in bcol.messages] == [("m4", "true"), ("m5", "true"), ("m6", "true")]
        alice.send(destination=f"/topic/{topic}", body="live", headers={"receipt": "live"})
        bcol.wait_messages(4)
        assert bcol.messages[-1].body == "live" and "x-history" not in bcol.messages[-1].headers

        # A topic no policy covers has no offsets.
        plain = f"plain.{uid()}"
        subscribe(bob, bcol, f"/topic/{plain}", "p", **{"x-history": "3"})
        alice.send(destination=f"/topic/{plain}", body="p", headers={"receipt": "p"})
        bcol.wait_messages(5)
        assert "x-offset" not in bcol.messages[-1].headers
        stomp_close(alice)
        stomp_close(bob)
        srv.stop()

        srv = StarlingServer(data, ["--config", str(config)]).start()
        carol, ccol = connect(srv, "carol")
        headers = subscribe(carol, ccol, f"/topic/{topic}", "r", **{"x-resume-from": f"{epoch}:6"})
        assert headers["x-recovered"] == "true"
        assert [m.body for m in ccol.messages] == ["m6", "live"]
        time.sleep(0.1)
        stomp_close(carol)
    finally:
        srv.stop()
