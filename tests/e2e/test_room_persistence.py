"""Room history in the embedded store: it survives a restart and a kill -9, with its epoch and offsets, so clients
resume across them (docs/rooms.md)."""

from __future__ import annotations

import time

import stomp

from e2e_helpers import Collector, StarlingServer, stomp_close, stomp_connect, uid


def start(data_dir, extra=None) -> StarlingServer:
    return StarlingServer(data_dir, extra).start()


class ReceiptCollector(Collector):
    """A collector that also keeps each RECEIPT's headers (room receipts carry x-epoch, x-offset, x-recovered)."""

    def __init__(self):
        super().__init__()
        self.receipt_headers: dict[str, dict] = {}

    def on_receipt(self, frame):
        with self.cond:
            self.receipt_headers[frame.headers.get("receipt-id")] = dict(frame.headers)
        super().on_receipt(frame)


def connect(srv: StarlingServer, login: str):
    conn = stomp.Connection12([("127.0.0.1", srv.stomp_port)], timeout=5, reconnect_attempts_max=1, heartbeats=(0, 0))
    col = ReceiptCollector()
    stomp_connect(conn, col, username=login, passcode="x")
    return conn, col


def subscribe(conn, col: ReceiptCollector, destination: str, sub_id: str, **headers) -> dict:
    """SUBSCRIBE with a receipt; returns the RECEIPT's headers (once the history before it has arrived)."""
    receipt = f"sub-{uid()}"
    conn.subscribe(destination=destination, id=sub_id, receipt=receipt, headers=headers)
    col.wait_receipt(receipt)
    return col.receipt_headers[receipt]


def send_all(conn, col, room: str, bodies: list[str]) -> None:
    for i, body in enumerate(bodies):
        conn.send(destination=f"/room/{room}", body=body, headers={"receipt": f"s-{body}"})
    for body in bodies:
        col.wait_receipt(f"s-{body}", timeout=10)


def test_room_history_survives_restart_and_kill(tmp_path):
    """Messages whose SEND receipt arrived are in the room's history after a graceful restart and after kill -9, with
    the same epoch and offsets: a client resumes from its last offset with x-recovered:true and gets exactly what it
    missed."""
    room = uid()
    srv = start(tmp_path)
    try:
        alice, acol = connect(srv, "alice")
        epoch = subscribe(alice, acol, f"/room/{room}", "r")["x-epoch"]
        send_all(alice, acol, room, [f"a{i}" for i in range(5)])
        acol.wait_messages(5)
        assert [m.headers["x-offset"] for m in acol.messages] == ["1", "2", "3", "4", "5"]
        stomp_close(alice)
        srv.stop()
        assert srv.proc.returncode == 0

        srv = start(tmp_path)
        assert any("store recovered" in line and "kept_messages=5" in line for line in srv.lines), srv.lines[-5:]
        bob, bcol = connect(srv, "bob")
        send_all(bob, bcol, room, ["b0", "b1"])
        srv.kill()  # SIGKILL: what was acknowledged must be on disk

        srv = start(tmp_path)
        carol, ccol = connect(srv, "carol")
        headers = subscribe(carol, ccol, f"/room/{room}", "r", **{"x-resume-from": f"{epoch}:3"})
        assert headers["x-recovered"] == "true" and headers["x-epoch"] == epoch and headers["x-offset"] == "7"
        got = [(m.body, m.headers["x-offset"], m.headers.get("x-history")) for m in ccol.messages]
        assert got == [("a3", "4", "true"), ("a4", "5", "true"), ("b0", "6", "true"), ("b1", "7", "true")]
        assert {m.headers["user-name"] for m in ccol.messages} == {"alice", "bob"}
        # Live messages continue the same stream.
        send_all(carol, ccol, room, ["c0"])
        ccol.wait_messages(5)
        assert ccol.messages[-1].headers["x-offset"] == "8" and "x-history" not in ccol.messages[-1].headers
        stomp_close(carol)
    finally:
        srv.stop()


def test_trimmed_history_stays_trimmed_after_restart(tmp_path):
    """A room keeps only its policy's last N messages on disk too: after a restart x-history gives those N, and a
    resume from before them is not recoverable."""
    config = tmp_path / "starling.toml"
    config.write_text('[[policy]]\nmatch = "/room/small.#"\nhistory = 3\n')
    room = f"small.{uid()}"
    data = tmp_path / "data"
    srv = start(data, ["--config", str(config)])
    try:
        alice, acol = connect(srv, "alice")
        epoch = subscribe(alice, acol, f"/room/{room}", "r")["x-epoch"]
        send_all(alice, acol, room, [f"m{i}" for i in range(8)])
        stomp_close(alice)
        srv.stop()

        srv = start(data, ["--config", str(config)])
        bob, bcol = connect(srv, "bob")
        subscribe(bob, bcol, f"/room/{room}", "h", **{"x-history": "100"})
        assert [m.body for m in bcol.messages] == ["m5", "m6", "m7"]
        assert subscribe(bob, bcol, f"/room/{room}", "late", **{"x-resume-from": f"{epoch}:2"})["x-recovered"] == "false"
        time.sleep(0.2)
        assert len(bcol.messages) == 3
        stomp_close(bob)
    finally:
        srv.stop()


def test_history_is_bounded_in_bytes(tmp_path):
    """history-max-bytes bounds what a room keeps in bytes (memory stays bounded with large messages): of ten
    1,000-byte messages a 2,500-byte history keeps the newest two, in memory and after a restart."""
    config = tmp_path / "starling.toml"
    config.write_text('[[policy]]\nmatch = "/room/big.#"\nhistory = 100\nhistory-max-bytes = 2500\n')
    room = f"big.{uid()}"
    data = tmp_path / "data"
    srv = start(data, ["--config", str(config)])
    try:
        alice, acol = connect(srv, "alice")
        for i in range(10):
            alice.send(destination=f"/room/{room}", body=f"{i}" * 1000, headers={"receipt": f"s{i}"})
        acol.wait_receipt("s9")
        for restart in (False, True):
            if restart:
                stomp_close(alice)
                srv.stop()
                srv = start(data, ["--config", str(config)])
                alice, acol = connect(srv, "alice")
            sub = f"h{int(restart)}"
            subscribe(alice, acol, f"/room/{room}", sub, **{"x-history": "100"})
            got = [m.body[0] for m in acol.messages if m.headers["subscription"] == sub]
            assert got == ["8", "9"], (restart, got)
        stomp_close(alice)
    finally:
        srv.stop()
