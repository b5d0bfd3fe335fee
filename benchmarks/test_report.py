"""Tests for benchmarks/report.py on synthetic results (no broker, no load generator needed).

    python3 -m pytest benchmarks/test_report.py
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402


def result(scenario, delivered, p50, p99, cpu, lost=0, dup=0, ooo=0, per_conn=None, deflate=False, errors=()):
    r = {
        "scenario": scenario.split("-")[0], "target": "ws://127.0.0.1/ws", "deflate": deflate, "parameters": {},
        "durationSeconds": 10.0, "sent": 100, "delivered": 100, "expected": 100,
        "lost": lost, "duplicated": dup, "outOfOrder": ooo,
        "sentPerSecond": delivered / 10, "deliveredPerSecond": delivered,
        "latencyMs": {"p50": p50, "p90": p50 * 2, "p99": p99, "p999": p99 * 2, "max": p99 * 4},
        "connections": {"opened": 10, "failed": 0, "dropped": 0},
        "server": {"cpuPercent": cpu, "rssBytesBefore": 1, "rssBytesAfter": 2, "rssBytesPeak": 3,
                   "rssBytesPerConnection": per_conn if per_conn is not None else 0.0},
        "errors": list(errors),
    }
    return r


def write_run(tmp: Path, scenario, deflate, broker, rep, res, exit_code=0):
    name = f"{scenario}__deflate-{'on' if deflate else 'off'}__{broker}__rep{rep}"
    if res is not None:
        (tmp / f"{name}.json").write_text(json.dumps(res))
    status = {0: "ok", 1: "verification-failed", 3: "refused"}.get(exit_code, f"exit-{exit_code}")
    with open(tmp / "runs.jsonl", "a") as f:
        f.write(json.dumps({"scenario": scenario, "deflate": deflate, "broker": broker, "rep": rep,
                            "exit": exit_code, "status": status, "json": f"{name}.json",
                            "command": f"starling-loadtest {scenario} --url ws://x/{broker}"}) + "\n")


@pytest.fixture
def results(tmp_path):
    # fanout: Starling 3 reps (1000, 3000, 2000 -> median 2000), RabbitMQ (500, 400, 600 -> 500)
    for rep, (s, r) in enumerate([(1000, 500), (3000, 400), (2000, 600)], start=1):
        write_run(tmp_path, "fanout-1x1000", False, "starling", rep, result("fanout-1x1000", s, 1.0 * rep, 10.0 * rep, 50))
        write_run(tmp_path, "fanout-1x1000", False, "rabbitmq", rep, result("fanout-1x1000", r, 2.0, 40.0, 100))
    # queue: Starling refuses (exit 3, JSON with an error), RabbitMQ ok but one rep lost 2 messages (exit 1)
    for rep in (1, 2):
        write_run(tmp_path, "queue-4p4c", False, "starling", rep,
                  result("queue-4p4c", 0, 0, 0, 0, errors=["ERROR: destination /queue/bench not supported"]), 3)
    write_run(tmp_path, "queue-4p4c", False, "rabbitmq", 1, result("queue-4p4c", 800, 1, 5, 90))
    write_run(tmp_path, "queue-4p4c", False, "rabbitmq", 2, result("queue-4p4c", 900, 1, 7, 95, lost=2), 1)
    # connections: memory per connection
    write_run(tmp_path, "connections-10k", False, "starling", 1, result("connections-10k", 0, 0, 0, 5, per_conn=4096))
    write_run(tmp_path, "connections-10k", False, "rabbitmq", 1, result("connections-10k", 0, 0, 0, 30, per_conn=102400))
    (tmp_path / "meta.json").write_text(json.dumps({"command": "benchmarks/run.sh --quick", "nproc": 2,
                                                     "cpu": "Test CPU", "memBytes": 2**34, "reps": 3}))
    return tmp_path


def test_median_ignores_missing_values():
    assert report.median([3, None, 1, 2]) == 2
    assert report.median([4, 1]) == 2.5
    assert report.median([None, None]) is None
    assert report.median([]) is None


def test_ratio():
    assert report.ratio(2000, 500) == 4.0
    assert report.ratio(None, 500) is None
    assert report.ratio(10, 0) is None


def test_summaries_medians_and_totals(results):
    runs = report.load_runs(results)
    s = report.summarize(runs)
    st = s[("fanout-1x1000", False, "starling")]
    rb = s[("fanout-1x1000", False, "rabbitmq")]
    assert st.delivered_per_s == 2000 and rb.delivered_per_s == 500
    assert st.latency["p50"] == 2.0 and st.latency["p99"] == 20.0
    assert st.cpu_percent == 50 and st.status == "ok" and st.usable == 3
    q = s[("queue-4p4c", False, "rabbitmq")]
    assert q.delivered_per_s == 850 and q.lost == 2 and q.status == "verification failed"
    qs = s[("queue-4p4c", False, "starling")]
    assert qs.usable == 0 and qs.status == "not supported"
    assert "not supported" in qs.errors[0]
    c = s[("connections-10k", False, "starling")]
    assert c.rss_per_conn == 4096


def test_ratio_rows(results):
    rows = {(r["scenario"], r["deflate"]): r for r in report.ratio_rows(report.summarize(report.load_runs(results)))}
    f = rows[("fanout-1x1000", False)]
    assert f["throughput"] == 4.0 and f["p99"] == 0.5 and f["cpu"] == 0.5 and f["note"] == ""
    assert rows[("queue-4p4c", False)]["note"] == "Starling: not supported"
    assert rows[("connections-10k", False)]["memPerConn"] == pytest.approx(0.04)


def test_tables(results):
    s = report.summarize(report.load_runs(results))
    table = report.main_table(s)
    lines = table.splitlines()
    assert lines[0].startswith("| scenario | deflate | broker | sent msgs/s | delivered msgs/s")
    row = next(l for l in lines if "1,000 subscribers" in l and "| Starling |" in l)
    assert "| 200 | 2,000 |" in row and "| 20.0 |" in row and "3/3" in row
    assert any("queue" in l and "not supported" in l for l in lines)
    assert any("10,000 idle" in l and "4.0 KiB" in l for l in lines)
    ratios = report.ratio_table(s)
    assert "4.00×" in ratios and "0.50×" in ratios and "Starling: not supported" in ratios


def test_fmt_num():
    assert report.fmt_num(None) == "—"
    assert report.fmt_num(123456.7) == "123,457"
    assert report.fmt_num(1.23456) == "1.23"
    assert report.fmt_num(0.01234) == "0.0123"
    assert report.fmt_num(0) == "0"


def test_main_writes_markdown_and_charts(results, tmp_path):
    pytest.importorskip("matplotlib")
    docs = tmp_path / "docs"
    assert report.main([str(results), "--docs", str(docs)]) == 0
    md = (docs / "benchmarks.md").read_text()
    assert "# Benchmarks: Starling vs RabbitMQ Web-STOMP" in md
    assert "Test CPU" in md and "benchmarks/run.sh --quick" in md
    assert "charts/throughput.png" in md
    for chart in ("throughput.png", "latency.png", "memory.png"):
        assert (docs / "charts" / chart).stat().st_size > 1000


def test_fallback_without_index(tmp_path):
    (tmp_path / "fanout-1x1000__deflate-on__starling__rep1.json").write_text(
        json.dumps(result("fanout-1x1000", 10, 1, 2, 3, deflate=True)))
    runs = report.load_runs(tmp_path)
    assert runs[0]["deflate"] is True and runs[0]["broker"] == "starling" and runs[0]["rep"] == 1
    assert report.summarize(runs)[("fanout-1x1000", True, "starling")].delivered_per_s == 10


def test_scenario_titles_and_order():
    assert report.scenario_title("fanout-1x1000") == "fanout 1 topic x 1,000 subscribers"
    assert report.scenario_title("fanout-100x100-max") == "fanout 100 topics x 100 subscribers, max rate"
    assert report.scenario_title("connections-10k") == "10,000 idle connections"
    assert report.scenario_title("queue-4p4c") == "queue 4 producers / 4 consumers"
    assert report.scenario_title("queue-4p4c-persistent") == "queue 4 producers / 4 consumers, persistent 1 KiB with receipts"
    names = ["connections-10k", "fanout-100x100-max", "queue-4p4c", "fanout-100x100", "rooms-100x20",
             "fanout-1x1000"]
    assert sorted(names, key=report.scenario_sort_key) == [
        "fanout-1x1000", "fanout-100x100", "rooms-100x20", "queue-4p4c", "connections-10k", "fanout-100x100-max"]
