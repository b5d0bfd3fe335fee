#!/usr/bin/env python3
"""Turn a benchmarks/run.sh results directory into docs/benchmarks.md and docs/charts/*.png.

    python3 benchmarks/report.py benchmarks/results/<run> [--docs docs]

Input: <run>/runs.jsonl (one line per loadtest run: scenario, deflate, broker, rep, exit, status, json,
command), the per-run JSON files of starling-loadtest (loadtest/CONTRACT.md) and <run>/meta.json
(machine, versions, the run command). Figures are medians over the repetitions of each
(broker, scenario, deflate); lost/duplicated/out-of-order are totals over the repetitions.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

BROKERS = ("starling", "rabbitmq")
LABEL = {"starling": "Starling", "rabbitmq": "RabbitMQ Web-STOMP"}
COLOR = {"starling": "#e4572e", "rabbitmq": "#4a7ebb"}
# Scenario names are <kind>-<size>[-max], e.g. fanout-1x1000, fanout-100x100-max, rooms-100x20,
# queue-4p4c, connections-10k; display order: by kind as below, fixed-rate before max-rate, then size.
KIND_ORDER = ["fanout", "rooms", "queue", "connections"]


def scenario_title(name: str) -> str:
    """fanout-100x100-max -> 'fanout 100 topics x 100 subscribers, max rate'."""
    parts = name.split("-")
    kind, size, rest = parts[0], (parts[1] if len(parts) > 1 else ""), parts[2:]
    title = name
    try:
        if kind == "fanout" and "x" in size:
            t, s = size.split("x")
            title = f"fanout {int(t):,} topic{'s' if int(t) != 1 else ''} x {int(s):,} subscribers"
        elif kind == "rooms" and "x" in size:
            r, m = size.split("x")
            title = f"rooms {int(r):,} x {int(m):,} members"
        elif kind == "queue" and "p" in size and size.endswith("c"):
            p, c = size[:-1].split("p")
            title = f"queue {int(p)} producers / {int(c)} consumers"
        elif kind == "connections" and size.endswith("k"):
            title = f"{int(size[:-1]) * 1000:,} idle connections"
    except ValueError:
        return name
    if "persistent" in rest:
        title += ", persistent 1 KiB with receipts"
    if "max" in rest:
        title += ", max rate"
    return title


def scenario_sort_key(name: str):
    parts = name.split("-")
    kind = KIND_ORDER.index(parts[0]) if parts[0] in KIND_ORDER else len(KIND_ORDER)
    is_max = "max" in parts[2:]
    digits = "".join(ch if ch.isdigit() else " " for ch in (parts[1] if len(parts) > 1 else "")).split()
    return (is_max, kind, [int(d) for d in digits], name)


PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]
USABLE_EXITS = (0, 1)  # 1 = verification failed: the figures exist, the lost/dup counts say what went wrong


# ----------------------------------------------------------------------------------------- loading

def load_runs(results_dir: Path) -> list[dict]:
    """Every run of a results directory, each with its parsed loadtest JSON under "result" (or None)."""
    results_dir = Path(results_dir)
    index = results_dir / "runs.jsonl"
    runs: list[dict] = []
    if index.exists():
        for line in index.read_text().splitlines():
            if line.strip():
                runs.append(json.loads(line))
    else:  # no index: fall back to the file names <scenario>__deflate-<on|off>__<broker>__rep<N>.json
        for path in sorted(results_dir.glob("*__deflate-*__*__rep*.json")):
            scenario, deflate, broker, rep = path.stem.split("__")
            runs.append({"scenario": scenario, "deflate": deflate == "deflate-on", "broker": broker,
                         "rep": int(rep[3:]), "exit": 0, "status": "ok", "json": path.name})
    for run in runs:
        run["result"] = None
        name = run.get("json")
        if name and (results_dir / name).exists():
            try:
                run["result"] = json.loads((results_dir / name).read_text())
            except json.JSONDecodeError:
                run["result"] = None
    return runs


def load_meta(results_dir: Path) -> dict:
    path = Path(results_dir) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


# ----------------------------------------------------------------------------------------- numbers

def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are present; None when there are none."""
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(starling: float | None, rabbitmq: float | None) -> float | None:
    """Starling / RabbitMQ, or None when either side is missing or RabbitMQ's figure is 0."""
    if starling is None or rabbitmq is None or rabbitmq == 0:
        return None
    return starling / rabbitmq


def _get(d: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


@dataclass
class Summary:
    scenario: str
    deflate: bool
    broker: str
    reps: int = 0                      # runs attempted
    usable: int = 0                    # runs with figures (exit 0 or 1 and a JSON file)
    status: str = "ok"                 # ok | verification failed | not supported | refused | failed
    exits: list[int] = field(default_factory=list)
    delivered_per_s: float | None = None
    sent_per_s: float | None = None
    latency: dict[str, float | None] = field(default_factory=dict)
    cpu_percent: float | None = None
    rss_peak: float | None = None
    rss_per_conn: float | None = None
    conns_opened: float | None = None
    conns_failed: int = 0
    conns_dropped: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    errors: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def has_figures(self) -> bool:
        return self.usable > 0


def summarize(runs: list[dict]) -> dict[tuple[str, bool, str], Summary]:
    """Medians per (scenario, deflate, broker)."""
    groups: dict[tuple[str, bool, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], bool(run["deflate"]), run["broker"]), []).append(run)
    out: dict[tuple[str, bool, str], Summary] = {}
    for key, group in groups.items():
        s = Summary(*key)
        s.reps = len(group)
        s.exits = [int(r.get("exit", 0)) for r in group]
        s.commands = [r["command"] for r in group if r.get("command")]
        usable = [r["result"] for r in group if r.get("result") is not None and int(r.get("exit", 0)) in USABLE_EXITS]
        s.usable = len(usable)
        for r in group:
            for e in (_get(r.get("result"), "errors") or []):
                if e not in s.errors:
                    s.errors.append(str(e))
        s.delivered_per_s = median(_get(u, "deliveredPerSecond") for u in usable)
        s.sent_per_s = median(_get(u, "sentPerSecond") for u in usable)
        s.latency = {k: median(_get(u, "latencyMs", k) for u in usable) for k, _ in PERCENTILES}
        s.cpu_percent = median(_get(u, "server", "cpuPercent") for u in usable)
        s.rss_peak = median(_get(u, "server", "rssBytesPeak") for u in usable)
        s.rss_per_conn = median(_get(u, "server", "rssBytesPerConnection") for u in usable)
        s.conns_opened = median(_get(u, "connections", "opened") for u in usable)
        s.conns_failed = sum(int(_get(u, "connections", "failed") or 0) for u in usable)
        s.conns_dropped = sum(int(_get(u, "connections", "dropped") or 0) for u in usable)
        s.lost = sum(int(_get(u, "lost") or 0) for u in usable)
        s.duplicated = sum(int(_get(u, "duplicated") or 0) for u in usable)
        s.out_of_order = sum(int(_get(u, "outOfOrder") or 0) for u in usable)
        s.status = status_of(s)
        out[key] = s
    return out


def status_of(s: Summary) -> str:
    if s.usable == 0:
        if s.exits and all(e == 3 for e in s.exits):
            # refused every time: the target refused the destination/connection. For a scenario whose
            # connections were accepted but whose destination kind was refused that means "not supported".
            return "not supported" if not s.scenario.startswith("connections") else "refused"
        return "failed"
    if s.lost or s.duplicated or s.out_of_order or any(e == 1 for e in s.exits):
        return "verification failed"
    if s.usable < s.reps:
        return "partly failed"
    return "ok"


def scenarios_in(summaries: dict) -> list[str]:
    return sorted({scenario for (scenario, _, _) in summaries}, key=scenario_sort_key)


def is_message_scenario(scenario: str) -> bool:
    return not scenario.startswith("connections")


# ----------------------------------------------------------------------------------------- formatting

def fmt_num(v: float | None, digits: int = 3) -> str:
    """Human figure with about `digits` significant digits and thousands separators."""
    if v is None:
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    decimals = max(0, digits - 1 - int(f"{a:e}".split("e")[1]))
    return f"{v:,.{decimals}f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}×" if 0.1 <= v < 100 else f"{fmt_num(v, 2)}×"


def fmt_kib(v: float | None) -> str:
    return "—" if v is None else f"{v / 1024:,.1f} KiB"


def cell_status(s: Summary | None) -> str | None:
    """The text shown instead of figures when a broker has none for a scenario."""
    if s is None:
        return "not run"
    if not s.has_figures:
        return s.status
    return None


def main_table(summaries: dict) -> str:
    head = ("| scenario | deflate | broker | sent msgs/s | delivered msgs/s | p50 ms | p99 ms | server CPU % "
            "| memory / idle conn | lost / dup / out-of-order | reps ok |")
    rows = [head, "|" + "---|" * 11]
    for scenario in scenarios_in(summaries):
        for deflate in (False, True):
            for broker in BROKERS:
                s = summaries.get((scenario, deflate, broker))
                if s is None and (scenario, deflate, "starling") not in summaries \
                        and (scenario, deflate, "rabbitmq") not in summaries:
                    continue
                name = f"{scenario_title(scenario)}"
                d = "on" if deflate else "off"
                st = cell_status(s)
                if st is not None:
                    rows.append(f"| {name} | {d} | {LABEL[broker]} | {st} | | | | | | | "
                                f"{s.usable if s else 0}/{s.reps if s else 0} |")
                    continue
                msg = is_message_scenario(scenario)
                rows.append("| " + " | ".join([
                    name, d, LABEL[broker],
                    fmt_num(s.sent_per_s) if msg else "—",
                    fmt_num(s.delivered_per_s) if msg else "—",
                    fmt_num(s.latency.get("p50")) if msg else "—",
                    fmt_num(s.latency.get("p99")) if msg else "—",
                    fmt_num(s.cpu_percent),
                    fmt_kib(s.rss_per_conn) if not msg else "—",
                    f"{s.lost} / {s.duplicated} / {s.out_of_order}" if msg else
                    f"{s.conns_failed} failed, {s.conns_dropped} dropped",
                    f"{s.usable}/{s.reps}" + ("" if s.status == "ok" else f" ({s.status})"),
                ]) + " |")
    return "\n".join(rows)


def ratio_rows(summaries: dict) -> list[dict]:
    rows = []
    for scenario in scenarios_in(summaries):
        for deflate in (False, True):
            st = summaries.get((scenario, deflate, "starling"))
            rb = summaries.get((scenario, deflate, "rabbitmq"))
            if st is None and rb is None:
                continue
            ok = st is not None and rb is not None and st.has_figures and rb.has_figures
            row = {"scenario": scenario, "deflate": deflate, "throughput": None, "p50": None, "p99": None,
                   "cpu": None, "memPerConn": None, "note": ""}
            if ok:
                row.update(throughput=ratio(st.delivered_per_s, rb.delivered_per_s),
                           p50=ratio(st.latency.get("p50"), rb.latency.get("p50")),
                           p99=ratio(st.latency.get("p99"), rb.latency.get("p99")),
                           cpu=ratio(st.cpu_percent, rb.cpu_percent),
                           memPerConn=ratio(st.rss_per_conn, rb.rss_per_conn))
            elif st is None or not st.has_figures:
                row["note"] = f"Starling: {cell_status(st)}"
            else:
                row["note"] = f"RabbitMQ: {cell_status(rb)}"
            rows.append(row)
    return rows


def ratio_table(summaries: dict) -> str:
    head = ("| scenario | deflate | delivered msgs/s | p50 latency | p99 latency | server CPU "
            "| memory / idle conn |")
    rows = [head, "|" + "---|" * 7]
    for r in ratio_rows(summaries):
        msg = is_message_scenario(r["scenario"])
        if r["note"]:
            cells = [r["note"], "", "", "", ""]
        else:
            cells = [fmt_ratio(r["throughput"]) if msg else "—",
                     fmt_ratio(r["p50"]) if msg else "—",
                     fmt_ratio(r["p99"]) if msg else "—",
                     fmt_ratio(r["cpu"]),
                     fmt_ratio(r["memPerConn"]) if not msg else "—"]
        rows.append("| " + " | ".join([scenario_title(r["scenario"]),
                                        "on" if r["deflate"] else "off"] + cells) + " |")
    return "\n".join(rows)


def runs_table(runs: list[dict]) -> str:
    rows = ["| scenario | deflate | broker | rep | exit | delivered msgs/s | p99 ms | CPU % | lost / dup / ooo "
            "| load avg at start |", "|" + "---|" * 10]
    for r in runs:
        res = r.get("result")
        msg = is_message_scenario(r["scenario"])
        rows.append("| " + " | ".join([
            r["scenario"], "on" if r["deflate"] else "off", LABEL.get(r["broker"], r["broker"]),
            str(r.get("rep", "")), f'{r.get("exit", "")} {r.get("status", "")}'.strip(),
            fmt_num(_get(res, "deliveredPerSecond")) if msg else "—",
            fmt_num(_get(res, "latencyMs", "p99")) if msg else "—",
            fmt_num(_get(res, "server", "cpuPercent")),
            "—" if res is None else f'{_get(res, "lost") or 0} / {_get(res, "duplicated") or 0} / {_get(res, "outOfOrder") or 0}',
            fmt_num(r.get("loadavg")),
        ]) + " |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------- charts

def write_charts(runs: list[dict], summaries: dict, charts_dir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    charts_dir.mkdir(parents=True, exist_ok=True)
    written = []
    scenarios = [s for s in scenarios_in(summaries) if is_message_scenario(s)]

    # Throughput: one panel per scenario (own y scale), deflate off/on groups, a bar per broker,
    # whiskers = min..max over the repetitions.
    if scenarios:
        n = len(scenarios)
        cols = min(n, 2)
        nrows = (n + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False)
        width = 0.38
        for idx, scenario in enumerate(scenarios):
            ax = axes[idx // cols][idx % cols]
            top = 0.0
            present = [d for d in (False, True) if any((scenario, d, b) in summaries for b in BROKERS)]
            for i, broker in enumerate(BROKERS):
                for gi, deflate in enumerate(present):
                    x = gi + (i - 0.5) * width
                    s = summaries.get((scenario, deflate, broker))
                    vals = [_get(r["result"], "deliveredPerSecond") for r in runs
                            if r["scenario"] == scenario and bool(r["deflate"]) == deflate
                            and r["broker"] == broker and r.get("result") is not None
                            and int(r.get("exit", 0)) in USABLE_EXITS]
                    vals = [v for v in vals if v is not None]
                    if s is None or s.delivered_per_s is None or not vals:
                        ax.annotate(cell_status(s) or "no data", (x, 0), ha="center", va="bottom", rotation=90,
                                    fontsize=7, xytext=(0, 4), textcoords="offset points", color=COLOR[broker])
                        continue
                    y = s.delivered_per_s
                    ax.bar([x], [y], width, color=COLOR[broker], label=LABEL[broker] if gi == 0 else None,
                           yerr=[[y - min(vals)], [max(vals) - y]], capsize=3)
                    ax.annotate(fmt_num(y), (x, max(vals)), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 3), textcoords="offset points")
                    top = max(top, max(vals))
            ax.set_xticks(range(len(present)))
            ax.set_xlim(-0.6, len(present) - 0.4)
            ax.set_xticklabels([f"deflate {'on' if d else 'off'}" for d in present])
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_num(v)))
            ax.set_title(scenario_title(scenario), fontsize=10)
            ax.set_ylabel("delivered msgs/s")
            if top > 0:
                ax.set_ylim(0, top * 1.15)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7, loc="upper right")
        for idx in range(n, nrows * cols):
            axes[idx // cols][idx % cols].axis("off")
        fig.suptitle("Delivered messages per second (median of reps, whiskers min–max; higher is better)")
        fig.tight_layout()
        fig.savefig(charts_dir / "throughput.png", dpi=110)
        plt.close(fig)
        written.append("throughput.png")

        # Latency percentiles: one panel per scenario, a line per (broker, deflate), log scale.
        n = len(scenarios)
        cols = 2 if n > 1 else 1
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
        for idx, scenario in enumerate(scenarios):
            ax = axes[idx // cols][idx % cols]
            plotted = False
            for broker in BROKERS:
                for deflate in (False, True):
                    s = summaries.get((scenario, deflate, broker))
                    if s is None or not s.has_figures:
                        continue
                    ys = [s.latency.get(k) for k, _ in PERCENTILES]
                    if all(y is None for y in ys):
                        continue
                    ax.plot([lbl for _, lbl in PERCENTILES], [y if y and y > 0 else float("nan") for y in ys],
                            marker="o", color=COLOR[broker], linestyle="--" if deflate else "-",
                            label=f"{LABEL[broker]}, deflate {'on' if deflate else 'off'}")
                    plotted = True
            ax.set_title(scenario_title(scenario), fontsize=10)
            ax.set_ylabel("latency ms (median of reps)")
            if plotted:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_num(v)))
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            notes = [f"{LABEL[b]}: {cell_status(summaries.get((scenario, d, b)))}"
                     for b in BROKERS for d in (False, True)
                     if cell_status(summaries.get((scenario, d, b))) and summaries.get((scenario, d, b))]
            if notes:
                ax.text(0.02, 0.02, "\n".join(sorted(set(notes))), transform=ax.transAxes, fontsize=7, va="bottom")
            ax.grid(alpha=0.3, which="both")
        for idx in range(n, rows * cols):
            axes[idx // cols][idx % cols].axis("off")
        fig.suptitle("Send-to-receive latency percentiles (lower is better)")
        fig.tight_layout()
        fig.savefig(charts_dir / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")

    # Memory per idle connection and server CPU for the connections scenario(s).
    conn = [s for s in scenarios_in(summaries) if not is_message_scenario(s)]
    if conn:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{scenario_title(s)}\ndeflate {'on' if d else 'off'}" for s in conn for d in (False, True)]
        width = 0.38
        for i, broker in enumerate(BROKERS):
            for gi, (s_, d) in enumerate([(s, d) for s in conn for d in (False, True)]):
                s = summaries.get((s_, d, broker))
                x = gi + (i - 0.5) * width
                if s is None or s.rss_per_conn is None:
                    ax.annotate(cell_status(s) or "no data", (x, 0), ha="center", va="bottom", rotation=90,
                                fontsize=7, xytext=(0, 4), textcoords="offset points", color=COLOR[broker])
                    continue
                ax.bar([x], [s.rss_per_conn / 1024], width, color=COLOR[broker],
                       label=LABEL[broker] if gi == 0 else None)
                ax.annotate(f"{s.rss_per_conn / 1024:,.1f}", (x, s.rss_per_conn / 1024), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("server RSS per idle connection, KiB")
        ax.set_title("Memory per idle connection (lower is better)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(charts_dir / "memory.png", dpi=110)
        plt.close(fig)
        written.append("memory.png")
    return written


# ----------------------------------------------------------------------------------------- document

def machine_section(meta: dict) -> str:
    mem = meta.get("memBytes")
    lines = [
        f"- CPU: {meta.get('cpu', 'unknown')}, `nproc` = {meta.get('nproc', '?')}",
        f"- memory: {mem / 2**30:.1f} GiB" if mem else "- memory: unknown",
        f"- OS / kernel: {meta.get('os', '?')} / Linux {meta.get('kernel', '?')}",
        f"- RabbitMQ: {meta.get('rabbitmq', '?')} (Debian package, plugin `rabbitmq_web_stomp`)",
        f"- Swift: {meta.get('swift', '?')}; Starling commit `{meta.get('starlingCommit', '?')}`",
        f"- open-files limit: RabbitMQ {'/'.join(meta.get('rabbitmqOpenFiles') or ['?'])}, "
        f"Starling {'/'.join(meta.get('starlingOpenFiles') or ['?'])} (soft/hard, from /proc/<pid>/limits)",
        f"- run: {meta.get('date', '?')}, {meta.get('reps', '?')} repetition(s) per broker, scenario and deflate "
        f"setting, {fmt_num(meta.get('duration'))} s measured after {fmt_num(meta.get('warmup'))} s warm-up"
        + (" (`--quick`: a smoke run, not the reference figures)" if meta.get("quick") else ""),
        "- the load generator, Starling and RabbitMQ all run on this one machine and share its cores; "
        f"1-minute load average when the run began: {' '.join(meta.get('loadavgStart') or ['?'])} "
        "(each run's own is in the last table: a high one means other work shared the machine)",
    ]
    return "\n".join(lines)


def commands_section(summaries: dict, meta: dict) -> str:
    out = ["```sh", meta.get("command", "benchmarks/run.sh"), "```", "",
           "Servers as started by it:", "", "```sh",
           meta.get("starlingCommand", ".build/release/starling --port 18080 --stomp-port off"),
           "benchmarks/rabbitmq.sh start   # private node, config below, ulimit -n 20000", "```", "",
           "Load generator, one command per scenario and broker (deflate off; `--deflate on` for the other half; "
           "`<pid>` is the broker's process, for RabbitMQ its `beam.smp`):", "", "```sh"]
    for scenario in scenarios_in(summaries):
        for broker in BROKERS:
            s = summaries.get((scenario, False, broker))
            if s and s.commands:
                out.append(s.commands[0])
    out += ["```"]
    if meta.get("rabbitmqConfig"):
        out += ["", "RabbitMQ configuration (`rabbitmq.conf` in its private directory):", "", "```ini",
                meta["rabbitmqConfig"].strip(), "```"]
    if meta.get("rabbitmqAdvancedConfig"):
        out += ["", "and `advanced.config` (the same listener with a 4,096 accept backlog):", "", "```erlang",
                meta["rabbitmqAdvancedConfig"].strip(), "```"]
    return "\n".join(out)


def errors_section(summaries: dict) -> str:
    lines = []
    for (scenario, deflate, broker), s in sorted(summaries.items()):
        if s.status != "ok":
            msg = "; ".join(s.errors[:3]) if s.errors else "no error message recorded"
            if s.lost or s.duplicated or s.out_of_order:
                msg = (f"{s.lost:,} lost, {s.duplicated:,} duplicated, {s.out_of_order:,} out of order "
                       f"over {s.usable} run(s)" + ("" if not s.errors else "; " + msg))
            lines.append(f"- {scenario_title(scenario)}, deflate {'on' if deflate else 'off'}, "
                         f"{LABEL[broker]}: **{s.status}** (exit codes {s.exits}): {msg}")
    return "\n".join(lines) if lines else "None: every run exited 0."


def render_markdown(runs: list[dict], summaries: dict, meta: dict, charts: list[str], results_rel: str) -> str:
    parts = [
        "# Benchmarks: Starling vs RabbitMQ Web-STOMP",
        "",
        "Generated by `benchmarks/run.sh` (through `benchmarks/report.py`); do not edit by hand. "
        "Both brokers get the same load from the same generator (`starling-loadtest`), alternating run by run. "
        "Figures are the median over the repetitions; lost / duplicated / out-of-order are totals over them. "
        "The ratio is Starling ÷ RabbitMQ: above 1 is better for throughput, below 1 is better for latency, "
        "CPU and memory.",
        "",
        "## Results",
        "",
        main_table(summaries),
        "",
        "### Starling / RabbitMQ",
        "",
        ratio_table(summaries),
        "",
        "- sent msgs/s: messages published per second (the offered load; for the max-rate scenarios as many "
        "as the broker accepted). delivered msgs/s: messages received by all subscribers per second, during "
        "the measured window.",
        "- lost: expected messages not received by the end of the run (the load generator waits at most 5 s "
        "after the window): a broker that fell behind shows its backlog here.",
        "- latency: from send (timestamp header) to receive, over every delivered message (HdrHistogram).",
        "- server CPU %: the broker process's CPU over the run (100 % = one core; this machine has "
        f"{meta.get('nproc', '?')}).",
        "- memory / idle connection: growth of the broker's RSS while holding the idle connections, divided by "
        "their number.",
        "- not supported: the broker refused the scenario (the load generator's exit status 3).",
        "",
    ]
    if charts:
        parts += ["## Charts", ""]
        for c in charts:
            parts += [f"![{c[:-4]}](charts/{c})", ""]
    parts += ["## Problems during the run", "", errors_section(summaries), "",
              "## Machine", "", machine_section(meta), "",
              "## Exact commands", "", commands_section(summaries, meta), "",
              "## Every run", "", f"Raw JSON: `{results_rel}` (not committed).", "", runs_table(runs), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="a benchmarks/results/<run> directory")
    ap.add_argument("--docs", type=Path, default=here.parent / "docs", help="where benchmarks.md and charts/ go")
    ap.add_argument("--no-charts", action="store_true")
    args = ap.parse_args(argv)

    runs = load_runs(args.results)
    if not runs:
        print(f"report.py: no runs in {args.results}", file=sys.stderr)
        return 1
    meta = load_meta(args.results)
    summaries = summarize(runs)
    args.docs.mkdir(parents=True, exist_ok=True)
    charts = [] if args.no_charts else write_charts(runs, summaries, args.docs / "charts")
    try:
        results_rel = os.path.relpath(args.results.resolve(), here.parent)
    except ValueError:
        results_rel = str(args.results)
    md = render_markdown(runs, summaries, meta, charts, results_rel)
    # The hand-written record of what each optimisation bought lives beside the generated tables.
    log = args.docs / "performance-log.md"
    if log.exists():
        md = md.rstrip() + "\n\n" + log.read_text()
    (args.docs / "benchmarks.md").write_text(md)
    print(main_table(summaries))
    print()
    print(ratio_table(summaries))
    print(f"\nwrote {args.docs / 'benchmarks.md'} and {len(charts)} chart(s) in {args.docs / 'charts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
