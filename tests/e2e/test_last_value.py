"""Last values (issue 8, first part): a `[[policy]] last-value = true` topic keeps its newest message; every topic
SUBSCRIBE matching it (wildcards included) first gets it, marked `x-snapshot:true`, then live updates, with no update
lost or duplicated between the two, also under a concurrent publisher; the values survive a restart."""

from __future__ import annotations

import json
import os
import subprocess
import threading

from e2e_helpers import StarlingServer, starling_bin, stomp_close, uid
from test_room_persistence import connect, subscribe


def start(tmp_path):
    config = tmp_path / "starling.toml"
    config.write_text('[[policy]]\nmatch = "/topic/lv.#"\nlast-value = true\n')
    return StarlingServer(tmp_path / "data", ["--config", str(config)]).start()


def test_snapshot_then_live_under_a_concurrent_publisher(tmp_path):
    """20 symbols get values; a wildcard subscriber joining while a publisher keeps updating them sees, per symbol,
    one snapshot and then every later update in order: no gap, no duplicate, ending with the last value."""
    srv = start(tmp_path)
    try:
        run = uid()
        pub, pcol = connect(srv, "feed")
        symbols = [f"s{i}" for i in range(20)]
        for s in symbols:
            pub.send(destination=f"/topic/lv.{run}.{s}", body="0", headers={"receipt": f"init-{s}"})
        for s in symbols:
            pcol.wait_receipt(f"init-{s}")

        rounds = 60
        done = threading.Event()

        def publish():
            for n in range(1, rounds + 1):
                for s in symbols:
                    pub.send(destination=f"/topic/lv.{run}.{s}", body=str(n))
            pub.send(destination=f"/topic/lv.{run}.s0", body="end", headers={"receipt": "end"})
            done.set()

        thread = threading.Thread(target=publish, daemon=True)
        sub, scol = connect(srv, "watcher")
        thread.start()
        subscribe(sub, scol, f"/topic/lv.{run}.*", "w")
        thread.join(20)
        assert done.is_set()
        pcol.wait_receipt("end", timeout=10)
        # Topics live on different loops, so they may finish in any order: wait for each one's last update.
        finals = {f"/topic/lv.{run}.{s}" for s in symbols}
        scol.wait_for(lambda: finals <= {m.headers["destination"] for m in scol.messages if m.body == str(rounds)}, 10,
                      "every symbol's last update")
        scol.wait_for(lambda: any(m.body == "end" for m in scol.messages), 10, "the end marker")
        per_symbol: dict[str, list] = {}
        for m in scol.messages:
            per_symbol.setdefault(m.headers["destination"].rsplit(".", 1)[1], []).append(m)
        assert sorted(per_symbol) == sorted(symbols)
        for s, got in per_symbol.items():
            assert got[0].headers.get("x-snapshot") == "true", (s, got[0].headers)
            assert all("x-snapshot" not in m.headers for m in got[1:]), s
            values = [int(m.body) for m in got if m.body != "end"]
            assert values == list(range(values[0], rounds + 1)), (s, values)
            offsets = [int(m.headers["x-offset"]) for m in got]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (s, offsets)
        stomp_close(pub)
        stomp_close(sub)
    finally:
        srv.stop()


def test_exact_subscription_and_restart(tmp_path):
    """An exact-name SUBSCRIBE gets the last value too; a topic without a last value gets nothing first; the last
    values survive a restart (the store keeps them)."""
    srv = start(tmp_path)
    try:
        run = uid()
        pub, pcol = connect(srv, "feed")
        for value in ("1", "2", "3"):
            pub.send(destination=f"/topic/lv.{run}.x", body=value, headers={"receipt": f"r{value}"})
        pub.send(destination=f"/topic/plain.{run}", body="p", headers={"receipt": "rp"})
        pcol.wait_receipt("r3")
        pcol.wait_receipt("rp")
        sub, scol = connect(srv, "reader")
        subscribe(sub, scol, f"/topic/lv.{run}.x", "x")
        subscribe(sub, scol, f"/topic/plain.{run}", "p")
        assert [(m.body, m.headers.get("x-snapshot")) for m in scol.messages] == [("3", "true")]
        stomp_close(pub)
        stomp_close(sub)
        srv.stop()

        srv = StarlingServer(tmp_path / "data", ["--config", str(tmp_path / "starling.toml")]).start()
        sub, scol = connect(srv, "reader")
        subscribe(sub, scol, f"/topic/lv.{run}.#", "all")
        assert [(m.body, m.headers.get("x-snapshot")) for m in scol.messages] == [("3", "true")]
        stomp_close(sub)
    finally:
        srv.stop()


def test_demo_feed_fills_last_values(tmp_path):
    """starling-feed publishes JSON prices over plain TCP STOMP; a SUBSCRIBE to /topic/lv.<run>.* afterwards gets
    one snapshot per symbol with a sane price, and a live subscriber gets updates while it runs."""
    feed = os.path.join(os.path.dirname(starling_bin()), "starling-feed")
    srv = start(tmp_path)
    try:
        run = uid()
        live, lcol = connect(srv, "live")
        subscribe(live, lcol, f"/topic/lv.{run}.*", "l")
        result = subprocess.run(
            [feed, "--port", str(srv.stomp_port), "--symbols", "AAPL,MSFT,GOOG", "--rate", "300", "--duration", "1",
             "--prefix", f"/topic/lv.{run}."],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        sent = int(result.stdout.split("starling-feed: ")[1].split()[0])
        assert "updates for 3 symbols" in result.stdout and sent > 100, result.stdout
        lcol.wait_messages(sent, timeout=10)
        late, col = connect(srv, "late")
        subscribe(late, col, f"/topic/lv.{run}.*", "s")
        quotes = {m.headers["x-key"]: json.loads(m.body) for m in col.messages}
        assert sorted(quotes) == ["AAPL", "GOOG", "MSFT"]
        assert all(m.headers.get("x-snapshot") == "true" and m.headers["user-name"] == "feed" for m in col.messages)
        for symbol, quote in quotes.items():
            assert quote["symbol"] == symbol and quote["price"] > 0
            last_live = [json.loads(m.body) for m in lcol.messages if m.headers["x-key"] == symbol][-1]
            assert last_live == quote, "the snapshot is the last update the live subscriber got"
        stomp_close(live)
        stomp_close(late)
    finally:
        srv.stop()
