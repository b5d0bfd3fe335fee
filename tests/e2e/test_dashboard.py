"""docs/grafana-dashboard.json asks only for metrics the server exports: every `starling_*` name in its queries
(a histogram's `_bucket`, `_sum` and `_count` included) appears in a real scrape of /metrics."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from e2e_helpers import RawTcpStomp, uid

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_dashboard_queries_name_exported_metrics(server):
    # Per-queue series exist while a queue does.
    client = RawTcpStomp(server.stomp_port)
    client.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    assert client.recv_frame(10).command == "CONNECTED"
    client.send_frame("SEND", {"destination": f"/queue/dashboard-{uid()}", "receipt": "r"}, "x")
    assert client.recv_until("RECEIPT").headers["receipt-id"] == "r"
    client.close()
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10).read().decode()
    exported = set(re.findall(r"^(starling_\w+)", scrape, re.MULTILINE))
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 14
    wanted = {name for expr in expressions for name in re.findall(r"starling_\w+", expr)}
    missing = sorted(wanted - exported)
    assert not missing, f"dashboard queries metrics the server does not export: {missing}"
    # And the panels cover the families an operator needs first.
    for family in ["starling_messages_delivered_total", "starling_connections", "starling_delivery_latency_seconds_bucket",
                   "starling_errors_total", "starling_limits_hit_total", "starling_queue_ready"]:
        assert family in wanted, family
