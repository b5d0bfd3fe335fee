"""starling-loadtest against a Starling started by the test: short smoke runs of every scenario (exit status,
verification counters and JSON shape as in loadtest/CONTRACT.md), and the refusal paths (exit 3).

The binary comes from STARLING_LOADTEST_BIN (default <repo>/.build/debug/starling-loadtest).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from e2e_helpers import REPO

LOADTEST_BIN = os.environ.get("STARLING_LOADTEST_BIN", str(REPO / ".build" / "debug" / "starling-loadtest"))

CONTRACT_KEYS = {
    "scenario", "target", "deflate", "parameters", "durationSeconds", "sent", "delivered", "expected", "lost",
    "duplicated", "outOfOrder", "sentPerSecond", "deliveredPerSecond", "latencyMs", "connections", "errors",
}


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.path.exists(LOADTEST_BIN):
        pytest.fail(f"starling-loadtest not found at {LOADTEST_BIN} (set STARLING_LOADTEST_BIN)", pytrace=False)


def run_loadtest(tmp_path: Path, *args: str, timeout: float = 30.0):
    """Runs the load generator; returns (exit status, parsed JSON or None, stdout + stderr)."""
    out = tmp_path / "result.json"
    proc = subprocess.run([LOADTEST_BIN, *args, "--json", str(out)], capture_output=True, text=True,
                          timeout=timeout)
    text = proc.stdout + proc.stderr
    result = json.loads(out.read_text()) if out.exists() else None
    return proc.returncode, result, text


def assert_clean(code: int, result, text: str, scenario: str):
    assert code == 0, f"exit {code}:\n{text}"
    assert result is not None, text
    assert CONTRACT_KEYS <= result.keys(), f"missing keys {CONTRACT_KEYS - result.keys()}"
    assert result["scenario"] == scenario
    assert result["errors"] == [], text
    assert result["connections"]["failed"] == 0 and result["connections"]["dropped"] == 0, text
    assert set(result["latencyMs"]) == {"p50", "p90", "p99", "p999", "max"}
    assert result["client"]["cpuPercent"] >= 0


def assert_verified(result, text: str):
    assert result["sent"] > 0, text
    assert result["expected"] > 0, text
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["outOfOrder"] == 0, text
    assert result["delivered"] == result["expected"], text
    assert result["deliveredPerSecond"] > 0 and result["sentPerSecond"] > 0, text
    lat = result["latencyMs"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat


@pytest.mark.parametrize("deflate", ["off", "on"])
def test_fanout_verifies_every_delivery(server, tmp_path, deflate):
    """fanout, 2 publishers x 2 topics x 10 subscribers, paced: every subscriber gets every message of its
    topic, in order, with or without permessage-deflate."""
    code, result, text = run_loadtest(
        tmp_path, "fanout", "--url", server.ws_url, "--publishers", "2", "--topics", "2", "--subscribers", "10",
        "--rate", "400", "--duration", "1.5", "--warmup", "0.5", "--payload", "200", "--deflate", deflate,
        "--server-pid", str(server.proc.pid))
    assert_clean(code, result, text, "fanout")
    assert_verified(result, text)
    assert result["deflate"] is (deflate == "on")
    assert result["connections"]["opened"] == 22
    # 2 topics x 10 subscribers: every message is expected 10 times.
    assert result["expected"] == result["sent"] * 10
    assert result["parameters"]["subscribers"] == 10
    srv = result["server"]
    assert srv["cpuPercent"] > 0 and srv["rssBytesPeak"] >= srv["rssBytesBefore"] > 0


def test_fanout_as_fast_as_possible(server, tmp_path):
    """fanout with --rate 0: the flow window keeps it bounded, nothing is lost and the run ends on time."""
    code, result, text = run_loadtest(
        tmp_path, "fanout", "--url", server.ws_url, "--subscribers", "20", "--rate", "0", "--duration", "1.5",
        "--warmup", "0.5")
    assert_clean(code, result, text, "fanout")
    assert_verified(result, text)


def test_rooms_every_member_gets_the_room(server, tmp_path):
    """rooms, 4 rooms x 5 members each sending 20 msg/s: each member receives every message of its room
    (its own included) and none of the others."""
    code, result, text = run_loadtest(
        tmp_path, "rooms", "--url", server.ws_url, "--rooms", "4", "--members", "5", "--rate", "20",
        "--duration", "1.5", "--warmup", "0.5")
    assert_clean(code, result, text, "rooms")
    assert_verified(result, text)
    assert result["expected"] == result["sent"] * 5
    assert result["connections"]["opened"] == 20


def test_connections_hold_and_memory(server, tmp_path):
    """connections, 200 idle connections with heart-beats held for 2 s: all open, none dropped, and the
    server's memory per connection is reported."""
    code, result, text = run_loadtest(
        tmp_path, "connections", "--url", server.ws_url, "--connections", "200", "--heartbeat", "500",
        "--hold", "2", "--server-pid", str(server.proc.pid))
    assert_clean(code, result, text, "connections")
    assert result["connections"]["opened"] == 200
    srv = result["server"]
    assert srv["rssBytesAfter"] > 0 and srv["rssBytesBefore"] > 0
    assert "rssBytesPerConnection" in srv
    assert result["durationSeconds"] == 2


def test_connections_with_workers(server, tmp_path):
    """connections --workers 2: two child processes share the connections and the parent merges them."""
    code, result, text = run_loadtest(
        tmp_path, "connections", "--url", server.ws_url, "--connections", "100", "--workers", "2",
        "--hold", "1", "--source-addresses", "2")
    assert_clean(code, result, text, "connections")
    assert result["connections"]["opened"] == 100


@pytest.mark.parametrize("ack", ["auto", "client-individual"])
def test_queue_competing_consumers(server, tmp_path, ack):
    """queue: 2 producers, 3 competing consumers on 2 queues: every message reaches exactly one consumer."""
    code, result, text = run_loadtest(
        tmp_path, "queue", "--url", server.ws_url, "--producers", "2", "--consumers", "3", "--queues", "2",
        "--rate", "400", "--ack", ack, "--duration", "2", "--warmup", "0.5")
    assert_clean(code, result, text, "queue")
    assert result["delivered"] == result["sent"] > 0
    assert result["duplicated"] == 0


def test_closed_port_is_a_refused_target(tmp_path):
    """A port nobody listens on: the connection is refused, exit status 3, and the output says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, result, text = run_loadtest(
        tmp_path, "fanout", "--url", f"ws://127.0.0.1:{port}/ws", "--subscribers", "2", "--duration", "1")
    assert code == 3, f"exit {code}:\n{text}"
    assert "refused" in text.lower(), text
    assert result is not None and result["errors"], result


def test_wrong_path_is_a_refused_target(server, tmp_path):
    """An HTTP path that is not a WebSocket endpoint: the non-101 status is reported, exit status 3."""
    code, result, text = run_loadtest(
        tmp_path, "connections", "--url", server.url("/no-such-endpoint"), "--connections", "3", "--hold", "0")
    assert code == 3, f"exit {code}:\n{text}"
    assert "HTTP status" in text, text


def test_bad_usage_exits_2(tmp_path):
    """An unknown scenario or a bad option value is a usage error: exit status 2."""
    assert run_loadtest(tmp_path, "nonsense")[0] == 2
    assert run_loadtest(tmp_path, "fanout", "--deflate", "maybe")[0] == 2
    assert run_loadtest(tmp_path, "fanout", "--no-such-option")[0] == 2
