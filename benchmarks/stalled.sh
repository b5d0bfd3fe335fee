#!/usr/bin/env bash
# Slow consumers: fanout with stalled subscribers. Starling (release) with a conflate policy on /topic/#, Starling
# with the default disconnect policy, and RabbitMQ Web-STOMP, the same load generator, alternating, N reps of
# --stalled-percent 0 and 10. One fresh broker process per run (so RSS start/peak/end compare).
#
#   benchmarks/stalled.sh [--reps N] [--duration S] [--warmup S] [--rate R] [--topics T] [--subscribers S]
#                         [--payload B] [--percents "0 10"] [--variants "conflate disconnect rabbitmq"]
#                         [--results DIR] [--scratch-path DIR] [--no-build] [--loadtest PATH]
#   benchmarks/stalled.sh --table DIR     print the markdown table of an existing results directory
#
# Defaults: 3 reps, 30 s measured (+2 s warm-up), 1 topic x 100 subscribers, 1,000 msgs/s of 1 KiB (each stalled
# subscriber falls behind by ~1 MB/s), results in benchmarks/results/stalled-<date>/ (JSON per run, runs.jsonl,
# meta.json, table.md, rss.png). Every load generator run holds `flock /tmp/perf/bench.lock`.
# The private RabbitMQ (benchmarks/rabbitmq.sh) runs in /tmp/starling-bench-rabbitmq-stalled on its own ports
# (Web-STOMP 15684), so it does not collide with benchmarks/run.sh's. See benchmarks/stalled.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ORIG_CMD="benchmarks/stalled.sh${*:+ $*}"

REPS=3
DURATION=30
WARMUP=2
RATE=1000
TOPICS=1
SUBSCRIBERS=100
PAYLOAD=1024
PERCENTS="0 10"
VARIANTS="conflate disconnect rabbitmq"
RESULTS=""
SCRATCH="$ROOT/.build-bench"
BUILD=1
LOADTEST=""
TABLE_ONLY=""
STARLING_PORT="${STARLING_PORT:-18095}"
LOCK="${BENCH_LOCK:-/tmp/perf/bench.lock}"
export RMQ_DIR="${RMQ_DIR:-/tmp/starling-bench-rabbitmq-stalled}"
export RMQ_WS_PORT="${RMQ_WS_PORT:-15684}"
export RMQ_AMQP_PORT="${RMQ_AMQP_PORT:-25684}"
export RMQ_DIST_PORT="${RMQ_DIST_PORT:-25685}"
export RMQ_EPMD_PORT="${RMQ_EPMD_PORT:-14379}"
export RMQ_NODENAME="${RMQ_NODENAME:-starlingstalled@localhost}"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) REPS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --topics) TOPICS="$2"; shift 2 ;;
        --subscribers) SUBSCRIBERS="$2"; shift 2 ;;
        --payload) PAYLOAD="$2"; shift 2 ;;
        --percents) PERCENTS="$2"; shift 2 ;;
        --variants) VARIANTS="$2"; shift 2 ;;
        --results) RESULTS="$2"; shift 2 ;;
        --scratch-path) SCRATCH="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --loadtest) LOADTEST="$2"; shift 2 ;;
        --table) TABLE_ONLY="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "stalled.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "[stalled.sh $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- table (also used alone with --table DIR)
table() { # results-dir: markdown on stdout, also written to DIR/table.md (and DIR/rss.png if matplotlib is there)
    python3 - "$1" <<'EOF'
import json, statistics, sys
from pathlib import Path
d = Path(sys.argv[1])
runs = [json.loads(l) for l in open(d / "runs.jsonl") if l.strip()]
meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
LABEL = {"conflate": ("Starling", "conflate"), "disconnect": ("Starling", "disconnect (default)"),
         "rabbitmq": ("RabbitMQ Web-STOMP", "(none: queues grow)")}
MiB = 1048576
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, f="{:,.0f}"):
    return "n/a" if x is None else f.format(x)
def pct(x):
    return f"{x:g}"
def series_at(series, t):
    if not series: return None
    return min(series, key=lambda p: abs(p[0] - t))[1]
groups = {}
for r in runs:
    p = d / r["json"]
    if not p.exists(): continue
    res = json.loads(p.read_text())
    groups.setdefault((r["variant"], r["percent"]), []).append((r, res))
order = [v for v in ["conflate", "disconnect", "rabbitmq"] if any(k[0] == v for k in groups)]
percents = sorted({k[1] for k in groups})
out = []
out.append("| broker | slow-consumer policy | stalled % | stalled subs | healthy delivered/s (median; per rep) | "
           "of offered | sent/s | p50 ms | p99 ms | server CPU % | server RSS start / peak / end (MiB) | "
           "stalled closed by broker | closed at ~t (s) | read by stalled after run (MiB) | lost | runs ok | load avg |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
rss_rows = []
for v in order:
    for pc in percents:
        items = groups.get((v, pc), [])
        if not items: continue
        broker, policy = LABEL.get(v, (v, ""))
        st = [res.get("stalled") or {} for _, res in items]
        srv = [res.get("server") or {} for _, res in items]
        def start_rss(s):
            ser = s.get("rssSeries") or []
            after = [p for p in ser if p[0] >= 0]
            return after[0][1] if after else s.get("rssBytesBefore")
        def closed_at(res):
            s = res.get("server") or {}; ser = s.get("openFilesSeries") or []
            n = (res.get("stalled") or {}).get("closedByBroker", 0)
            base = [p for p in ser if p[0] >= 0]
            if not n or not base: return None
            f0 = base[0][1]
            for t, f in base:
                if f <= f0 - n / 2: return t
            return None
        ok = sum(1 for r, _ in items if r["exit"] == 0)
        items.sort(key=lambda x: x[0]["rep"])
        def offered(res):
            # what the healthy subscribers should have received: messages sent x healthy subscribers per topic
            healthy = (res.get("stalled") or {}).get("healthySubscribers")
            subs = healthy if healthy is not None else res["parameters"]["subscribers"] * res["parameters"]["topics"]
            topics = res["parameters"]["topics"]
            want = res["sentPerSecond"] * subs / topics
            return res["deliveredPerSecond"] / want * 100 if want else None
        out.append("| " + " | ".join([
            broker, policy, pct(pc), fmt(med([x.get("subscribers", 0) for x in st])),
            fmt(med([res["deliveredPerSecond"] for _, res in items])) + " (" +
                " / ".join(fmt(res["deliveredPerSecond"]) for _, res in items) + ")",
            fmt(med([offered(res) for _, res in items]), "{:.0f} %"),
            fmt(med([res["sentPerSecond"] for _, res in items])),
            # no latency sample at all (max 0): nothing sent in the window arrived in it
            fmt(med([res["latencyMs"]["p50"] if res["latencyMs"]["max"] > 0 else None for _, res in items]), "{:,.1f}"),
            fmt(med([res["latencyMs"]["p99"] if res["latencyMs"]["max"] > 0 else None for _, res in items]), "{:,.1f}"),
            fmt(med([s.get("cpuPercent") for s in srv])),
            " / ".join(fmt(med(xs), "{:,.0f}") for xs in (
                [start_rss(s) / MiB if start_rss(s) else None for s in srv],
                [s.get("rssBytesPeak", 0) / MiB for s in srv],
                [s.get("rssBytesAfter", 0) / MiB for s in srv])),
            fmt(med([x.get("closedByBroker", 0) for x in st])),
            fmt(med([closed_at(res) for _, res in items]), "{:.0f}"),
            fmt(med([x.get("bytesAfterResume", 0) / MiB for x in st]), "{:,.1f}"),
            fmt(sum(res["lost"] for _, res in items)),
            f"{ok}/{len(items)}",
            fmt(med([r.get("loadavg") for r, _ in items]), "{:.1f}"),
        ]) + " |")
        # RSS over time of the first rep
        r0, res0 = sorted(items, key=lambda x: x[0]["rep"])[0]
        ser = (res0.get("server") or {}).get("rssSeries") or []
        if ser:
            window = float(meta.get("warmup", 0)) + float(meta.get("duration", 0))
            grid = [t for t in range(0, int(window) + 1, 5)] if window else [0]
            rss_rows.append((f"{broker}, {policy}, {pct(pc)}%", [(t, series_at(ser, t)) for t in grid] + [("end", ser[-1][1])], res0))
md = "\n".join(out)
if rss_rows:
    ts = rss_rows[0][1]
    md += "\n\nServer RSS (MiB) over time, first repetition (t = seconds since publishing began; the measured window is "
    md += f"{meta.get('warmup', '?')} ... {float(meta.get('warmup', 0)) + float(meta.get('duration', 0)):g} s; the last column is after the stalled subscribers read their backlog and every connection closed):\n\n"
    md += "| run | " + " | ".join(f"t={t}" for t, _ in ts[:-1]) + " | end |\n"
    md += "|---|" + "---|" * len(ts) + "\n"
    for name, pts, _ in rss_rows:
        md += f"| {name} | " + " | ".join(fmt(v / MiB if v else None) for _, v in pts) + " |\n"
(d / "table.md").write_text(md + "\n")
print(md)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, _, res in rss_rows:
        ser = (res.get("server") or {}).get("rssSeries") or []
        ax.plot([p[0] for p in ser], [p[1] / MiB for p in ser], label=name, linestyle="--" if name.endswith(" 0%") else "-")
    ax.set_xlabel("seconds since publishing began"); ax.set_ylabel("server RSS (MiB)")
    ax.set_title("Fanout with stalled subscribers: server RSS (first repetition)")
    ax.set_yscale("log"); ax.grid(True, alpha=0.3); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(d / "rss.png", dpi=110)
except Exception as e:  # no matplotlib: the tables are enough
    print(f"(no chart: {e})", file=sys.stderr)
EOF
}
if [[ -n "$TABLE_ONLY" ]]; then table "$TABLE_ONLY"; exit 0; fi

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    log "building: swift build -c release --scratch-path $SCRATCH (minutes on 2 cores)"
    swift build -c release --scratch-path "$SCRATCH"
fi
BIN="$SCRATCH/release"
[[ -d "$BIN" ]] || BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)"
STARLING_BIN="$BIN/starling"
LOADTEST="${LOADTEST:-$BIN/starling-loadtest}"
[[ -x "$STARLING_BIN" ]] || { echo "stalled.sh: $STARLING_BIN not built" >&2; exit 1; }
[[ -x "$LOADTEST" ]] || { echo "stalled.sh: $LOADTEST not built" >&2; exit 1; }

RESULTS="${RESULTS:-$HERE/results/stalled-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS" "$(dirname "$LOCK")"
INDEX="$RESULTS/runs.jsonl"
: > "$INDEX"
# Copies of the binaries, so a rebuild during the run cannot swap them between repetitions.
cp "$STARLING_BIN" "$RESULTS/.starling"; STARLING_BIN="$RESULTS/.starling"
cp "$LOADTEST" "$RESULTS/.starling-loadtest"; LOADTEST="$RESULTS/.starling-loadtest"
cat > "$RESULTS/conflate.toml" <<'EOF'
# benchmarks/stalled.sh: every topic conflates for slow consumers
[[policy]]
match = "/topic/#"
slow-consumer = "conflate"
EOF

# ---------------------------------------------------------------- brokers
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
STARLING_PID=""
RMQ_PID=""
STARLING_DATA=""
stop_starling() {
    if [[ -n "$STARLING_PID" ]] && kill -0 "$STARLING_PID" 2>/dev/null; then
        kill -TERM "$STARLING_PID" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$STARLING_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$STARLING_PID" 2>/dev/null || true
    fi
    STARLING_PID=""
    [[ -n "$STARLING_DATA" ]] && rm -rf "$STARLING_DATA"
    STARLING_DATA=""
}
stop_rabbitmq() {
    if [[ -n "$RMQ_PID" ]]; then
        [[ -d "$RMQ_DIR/log" ]] && cp -r "$RMQ_DIR/log/." "$RESULTS/rabbitmq-log/" 2>/dev/null || true
        "$HERE/rabbitmq.sh" stop >/dev/null 2>&1 || true
    fi
    RMQ_PID=""
}
stop_all() { stop_starling; stop_rabbitmq; rm -f "$RESULTS/.starling" "$RESULTS/.starling-loadtest"; }
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_starling() { # variant log
    local variant="$1" logfile="$2" args=()
    port_open "$STARLING_PORT" && { echo "stalled.sh: 127.0.0.1:$STARLING_PORT is in use (set STARLING_PORT)" >&2; exit 1; }
    [[ "$variant" == conflate ]] && args=(--config "$RESULTS/conflate.toml")
    STARLING_DATA="$(mktemp -d /tmp/starling-stalled-data.XXXXXX)"
    "$STARLING_BIN" --host 127.0.0.1 --port "$STARLING_PORT" --stomp-port off --data-dir "$STARLING_DATA" \
        --log-level warning "${args[@]}" > "$logfile" 2>&1 &
    STARLING_PID=$!
    for _ in $(seq 100); do
        if port_open "$STARLING_PORT" && kill -0 "$STARLING_PID" 2>/dev/null; then return 0; fi
        kill -0 "$STARLING_PID" 2>/dev/null || { cat "$logfile" >&2; echo "stalled.sh: Starling ($variant) exited at start" >&2; exit 1; }
        sleep 0.1
    done
    echo "stalled.sh: Starling did not open port $STARLING_PORT" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
wait_idle() { # pid: until it uses < 5 % of a core over a second (at most 60 s)
    local pid="$1" hz; hz="$(getconf CLK_TCK)"
    local t0=$SECONDS a b
    while (( SECONDS - t0 < 60 )); do
        a="$(cpu_ticks "$pid")"; sleep 1; b="$(cpu_ticks "$pid")"
        (( (b - a) * 100 < hz * 5 )) && return 0
    done
    log "warning: pid $pid still busy after 60 s"
}

# ---------------------------------------------------------------- meta
ORIG_CMD="$ORIG_CMD" ROOT="$ROOT" REPS="$REPS" DURATION="$DURATION" WARMUP="$WARMUP" RATE="$RATE" TOPICS="$TOPICS" \
SUBSCRIBERS="$SUBSCRIBERS" PAYLOAD="$PAYLOAD" RMQV="$("$HERE/rabbitmq.sh" version 2>/dev/null || echo unknown)" \
python3 - "$RESULTS/meta.json" <<'EOF'
import json, os, platform, re, subprocess, sys
E = os.environ
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception: return ""
cpu = re.search(r"^model name\s*:\s*(.*)$", open("/proc/cpuinfo").read(), re.M)
json.dump({"command": E["ORIG_CMD"], "date": sh("date -u +%Y-%m-%dT%H:%MZ"), "reps": int(E["REPS"]),
           "duration": float(E["DURATION"]), "warmup": float(E["WARMUP"]), "rate": float(E["RATE"]),
           "topics": int(E["TOPICS"]), "subscribers": int(E["SUBSCRIBERS"]), "payload": int(E["PAYLOAD"]),
           "nproc": os.cpu_count(), "cpu": cpu.group(1) if cpu else "unknown", "kernel": platform.release(),
           "loadavgStart": open("/proc/loadavg").read().split()[:3], "rabbitmq": E["RMQV"],
           "starlingCommit": sh(f"git -C {E['ROOT']} log --oneline -1"),
           "starlingDirty": sh(f"git -C {E['ROOT']} status --short -- Sources | wc -l")},
          open(sys.argv[1], "w"), indent=2)
EOF

# ---------------------------------------------------------------- runs
run_one() { # variant percent rep
    local variant="$1" percent="$2" rep="$3" url pid creds=()
    local base="$RESULTS/${variant}__stalled-${percent}__rep${rep}"
    case "$variant" in
        conflate|disconnect)
            start_starling "$variant" "$base.server.log"; pid="$STARLING_PID"
            url="ws://127.0.0.1:$STARLING_PORT/ws" ;;
        rabbitmq)
            RMQ_PID="$("$HERE/rabbitmq.sh" start 2>>"$RESULTS/rabbitmq-start.log")"; pid="$RMQ_PID"
            url="ws://127.0.0.1:$RMQ_WS_PORT/ws"; creds=(--login guest --passcode guest --host /) ;;
        *) echo "stalled.sh: unknown variant $variant" >&2; exit 2 ;;
    esac
    wait_idle "$pid"
    local cmd=("$LOADTEST" fanout --publishers 1 --topics "$TOPICS" --subscribers "$SUBSCRIBERS" --rate "$RATE"
               --payload "$PAYLOAD" --duration "$DURATION" --warmup "$WARMUP" --stalled-percent "$percent"
               --url "$url" "${creds[@]}" --quiet --json "$base.json" --server-pid "$pid")
    rm -f "$base.json"
    local t0=$SECONDS rc=0 load
    flock "$LOCK" bash -c 'cut -d" " -f1 /proc/loadavg > "$0.load"; exec "$@"' "$base" "${cmd[@]}" > "$base.log" 2>&1 || rc=$?
    load="$(cat "$base.load" 2>/dev/null || echo 0)"; rm -f "$base.load"
    local took=$((SECONDS - t0)) status
    case $rc in 0) status=ok ;; 1) status=verification-failed ;; 2) status=bad-usage ;; 3) status=refused ;; *) status="exit-$rc" ;; esac
    local alive=1; kill -0 "$pid" 2>/dev/null || alive=0
    log "$(printf '%-10s stalled %3s%% rep %s: %-19s %3ss  %s' "$variant" "$percent" "$rep" "$status" "$took" \
        "$(grep -m1 -E '^  rate' "$base.log" | sed 's/^ *//' || true)")"
    grep -E '^  stalled ' "$base.log" | sed 's/^ */    /' >&2 || true
    local shown="${cmd[*]}"
    shown="${shown//$RESULTS\/.starling-loadtest/starling-loadtest}"; shown="${shown//--server-pid $pid/--server-pid <pid>}"
    shown="${shown//$RESULTS\//<results>/}"
    VARIANT="$variant" PERCENT="$percent" REP="$rep" RC="$rc" STATUS="$status" TOOK="$took" LOAD="$load" ALIVE="$alive" \
    BASE="$(basename "$base")" SHOWN="$shown" python3 - "$INDEX" <<'EOF'
import json, os, sys
E = os.environ
broker = "rabbitmq" if E["VARIANT"] == "rabbitmq" else "starling"
rec = {"variant": E["VARIANT"], "broker": broker, "percent": float(E["PERCENT"]), "rep": int(E["REP"]),
       "exit": int(E["RC"]), "status": E["STATUS"], "seconds": int(E["TOOK"]), "loadavg": float(E["LOAD"] or 0),
       "brokerAliveAfter": E["ALIVE"] == "1", "json": E["BASE"] + ".json", "log": E["BASE"] + ".log",
       "command": E["SHOWN"]}
open(sys.argv[1], "a").write(json.dumps(rec) + "\n")
EOF
    [[ $alive == 1 ]] || log "WARNING: $variant (pid $pid) died during the run"
    case "$variant" in rabbitmq) stop_rabbitmq ;; *) stop_starling ;; esac
}

read -r -a variants <<<"$VARIANTS"
read -r -a percents <<<"$PERCENTS"
total=$((REPS * ${#variants[@]} * ${#percents[@]}))
log "results: $RESULTS ($total runs of ${WARMUP}+${DURATION} s: fanout $TOPICS x $SUBSCRIBERS, $RATE msgs/s, $PAYLOAD B)"
for rep in $(seq 1 "$REPS"); do
    for percent in "${percents[@]}"; do
        # rotate the broker order per repetition, so no broker always runs first on a quiet machine
        n=${#variants[@]}; order=()
        for i in $(seq 0 $((n - 1))); do order+=("${variants[$(((i + rep - 1) % n))]}"); done
        for variant in "${order[@]}"; do run_one "$variant" "$percent" "$rep"; done
    done
done
stop_all
log "done: $RESULTS"
echo
table "$RESULTS"
