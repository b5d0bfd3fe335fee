#!/usr/bin/env bash
# Ceiling comparison: the same load generator against minibroker (benchmarks/ceiling/*.c) and
# against Starling, alternating, REPS runs each, then the medians side by side.
#
#   benchmarks/ceiling/compare.sh [options] [SCENARIO ...]
#
# SCENARIO: fanout-100x100-max, rooms-100x20, fanout-1x1000-max (default: all three, in that order).
# Options:
#   --reps N          runs per broker and scenario (default 3)
#   --duration S      measured seconds per run (default 8)
#   --warmup S        warm-up seconds per run (default 2)
#   --starling PATH   Starling binary (default <repo>/.build-bench/release/starling)
#   --loadtest PATH   load generator (default <repo>/.build-bench/release/starling-loadtest)
#   --results DIR     where the JSON results and the minibroker binary go (default /tmp/ceiling-<date>)
#   --list            print the scenarios and exit
# Ports: MINI_PORT (default 18190) and STARLING_PORT (default 18192), both on 127.0.0.1.
# Builds minibroker with `cc -O2 ... -lcrypto` (needs libssl-dev); does not build Starling.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

# name | load generator arguments (--url, --json, --server-pid, --duration, --warmup, --quiet are added)
SCENARIOS=(
  "fanout-100x100-max|fanout --publishers 4 --topics 100 --subscribers 100 --rate 0 --in-flight 128"
  "rooms-100x20|rooms --rooms 100 --members 20 --rate 1"
  "fanout-1x1000-max|fanout --publishers 1 --topics 1 --subscribers 1000 --rate 0 --in-flight 128"
)

REPS=3
DURATION=8
WARMUP=2
STARLING=""
LOADTEST=""
RESULTS=""
SELECTED=()
MINI_PORT="${MINI_PORT:-18190}"
STARLING_PORT="${STARLING_PORT:-18192}"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) REPS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --starling) STARLING="$2"; shift 2 ;;
        --loadtest) LOADTEST="$2"; shift 2 ;;
        --results) RESULTS="$2"; shift 2 ;;
        --list) for s in "${SCENARIOS[@]}"; do echo "${s%%|*}: ${s#*|}"; done; exit 0 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) SELECTED+=("$1"); shift ;;
    esac
done

log() { echo "[compare.sh $(date +%H:%M:%S)] $*" >&2; }

# Scenarios to run, in the order given (all by default).
RUN=()
if [[ ${#SELECTED[@]} -eq 0 ]]; then
    RUN=("${SCENARIOS[@]}")
else
    for want in "${SELECTED[@]}"; do
        found=""
        for s in "${SCENARIOS[@]}"; do [[ "${s%%|*}" == "$want" ]] && found="$s"; done
        [[ -n "$found" ]] || { echo "compare.sh: unknown scenario '$want' (see --list)" >&2; exit 2; }
        RUN+=("$found")
    done
fi

# Binaries: this checkout's .build-bench, else the main checkout's when this is a git worktree.
find_bin() { # name -> path
    local main
    main="$(cd "$ROOT" && git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)"
    for dir in "$ROOT/.build-bench/release" "${main%/.git}/.build-bench/release"; do
        [[ -x "$dir/$1" ]] && { echo "$dir/$1"; return; }
    done
    echo "$ROOT/.build-bench/release/$1"
}
STARLING="${STARLING:-$(find_bin starling)}"
LOADTEST="${LOADTEST:-$(find_bin starling-loadtest)}"
[[ -x "$STARLING" ]] || { echo "compare.sh: no Starling at $STARLING (swift build -c release --scratch-path .build-bench, or --starling)" >&2; exit 1; }
[[ -x "$LOADTEST" ]] || { echo "compare.sh: no load generator at $LOADTEST (--loadtest)" >&2; exit 1; }

RESULTS="${RESULTS:-/tmp/ceiling-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS"
MINI="$RESULTS/minibroker"
log "building $MINI"
cc -O2 -o "$MINI" "$HERE"/*.c -lcrypto

# ---------------------------------------------------------------------------------------- brokers
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # both brokers and the load generator inherit this
MINI_PID=""
STARLING_PID=""
STARLING_DATA="$(mktemp -d /tmp/ceiling-starling-data.XXXXXX)"

stop_pid() { # pid: TERM, then KILL after 10 s
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$MINI_PID"
    stop_pid "$STARLING_PID"
    rm -rf "$STARLING_DATA"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # pid port name log
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || { cat "$4" >&2; echo "compare.sh: $3 exited" >&2; exit 1; }
        port_in_use "$2" && return 0
        sleep 0.1
    done
    echo "compare.sh: $3 did not open port $2" >&2; exit 1
}

for port in "$MINI_PORT" "$STARLING_PORT"; do
    if port_in_use "$port"; then echo "compare.sh: 127.0.0.1:$port is in use (set MINI_PORT / STARLING_PORT)" >&2; exit 1; fi
done

"$MINI" --port "$MINI_PORT" > "$RESULTS/minibroker.log" 2>&1 &
MINI_PID=$!
wait_port "$MINI_PID" "$MINI_PORT" minibroker "$RESULTS/minibroker.log"
STARLING_CMD=("$STARLING" --host 127.0.0.1 --port "$STARLING_PORT" --stomp-port off --log-level warning
              --data-dir "$STARLING_DATA" --set storage=memory)
"${STARLING_CMD[@]}" > "$RESULTS/starling.log" 2>&1 &
STARLING_PID=$!
wait_port "$STARLING_PID" "$STARLING_PORT" Starling "$RESULTS/starling.log"
log "minibroker pid $MINI_PID port $MINI_PORT; Starling pid $STARLING_PID port $STARLING_PORT ($STARLING)"

broker_pid() { case "$1" in minibroker) echo "$MINI_PID" ;; starling) echo "$STARLING_PID" ;; esac; }
broker_port() { case "$1" in minibroker) echo "$MINI_PORT" ;; starling) echo "$STARLING_PORT" ;; esac; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
wait_idle() { # pid: until it uses < 5 % of a core over a second (at most 30 s), so that the previous
              # run's backlog is not billed to the next one
    local pid="$1" hz t0=$SECONDS a b
    hz="$(getconf CLK_TCK)"
    while (( SECONDS - t0 < 30 )); do
        a="$(cpu_ticks "$pid")"; sleep 1; b="$(cpu_ticks "$pid")"
        (( (b - a) * 100 < hz * 5 )) && return 0
    done
    log "warning: pid $pid still busy after 30 s"
}

# -------------------------------------------------------------------------------------------- runs
INDEX="$RESULTS/runs.tsv" # scenario broker rep exit-status json
: > "$INDEX"
total=$(( ${#RUN[@]} * REPS * 2 )); done_runs=0
for entry in "${RUN[@]}"; do
    name="${entry%%|*}"; args="${entry#*|}"
    for rep in $(seq "$REPS"); do
        # alternate which broker goes first, so drift (thermal, other load) hits both alike
        if (( rep % 2 == 1 )); then order=(minibroker starling); else order=(starling minibroker); fi
        for broker in "${order[@]}"; do
            pid="$(broker_pid "$broker")"
            kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $broker (pid $pid) is gone" >&2; exit 1; }
            wait_idle "$pid"
            json="$RESULTS/${name}__${broker}__rep${rep}.json"
            set +e
            # shellcheck disable=SC2086 # $args is a word list on purpose
            "$LOADTEST" $args --url "ws://127.0.0.1:$(broker_port "$broker")/ws" --json "$json" --server-pid "$pid" \
                --duration "$DURATION" --warmup "$WARMUP" --quiet > "$RESULTS/${name}__${broker}__rep${rep}.txt" 2>&1
            rc=$?
            set -e
            done_runs=$((done_runs + 1))
            log "$(printf '[%d/%d] %-20s %-10s rep %d: exit %d' "$done_runs" "$total" "$name" "$broker" "$rep" "$rc")"
            printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$broker" "$rep" "$rc" "$json" >> "$INDEX"
        done
    done
done

# --------------------------------------------------------------------------------------- summary
python3 - "$INDEX" "$REPS" "$DURATION" "$WARMUP" <<'EOF' | tee "$RESULTS/summary.txt"
import json, statistics, sys
index, reps, duration, warmup = sys.argv[1:5]
runs = {}
order = []
for line in open(index):
    name, broker, rep, rc, path = line.rstrip("\n").split("\t")
    if name not in order:
        order.append(name)
    try:
        data = json.load(open(path))
    except (OSError, ValueError):
        data = None
    runs.setdefault((name, broker), []).append((int(rc), data))

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

print(f"\nmedians of {reps} runs per broker ({duration} s measured, {warmup} s warm-up); "
      "a run counts only when the load generator exited 0 (no loss, duplicates, reordering or drops)\n")
print(f"{'scenario':<20} {'broker':<12} {'ok runs':>7} {'delivered/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'server cpu %':>12}")
for name in order:
    figures = {}
    for broker in ("minibroker", "starling"):
        results = runs.get((name, broker), [])
        ok = [d for rc, d in results if rc == 0 and d]
        rate = med([d.get("deliveredPerSecond") for d in ok])
        p50 = med([d.get("latencyMs", {}).get("p50") for d in ok])
        p99 = med([d.get("latencyMs", {}).get("p99") for d in ok])
        cpu = med([d.get("server", {}).get("cpuPercent") for d in ok])
        figures[broker] = (rate, p50, p99, cpu)
        print(f"{name:<20} {broker:<12} {f'{len(ok)}/{len(results)}':>7} {fmt(rate, ',.0f'):>12} "
              f"{fmt(p50, '.3f'):>9} {fmt(p99, '.3f'):>9} {fmt(cpu, '.1f'):>12}")
    mini, star = figures["minibroker"], figures["starling"]
    def ratio(i):
        return None if mini[i] in (None, 0) or star[i] is None else 100.0 * star[i] / mini[i]
    pct = [fmt(ratio(i), '.0f') + ("%" if ratio(i) is not None else "") for i in range(4)]
    print(f"{'  starling / minibroker':<41} {pct[0]:>12} {pct[1]:>9} {pct[2]:>9} {pct[3]:>12}")
print()
EOF
log "results in $RESULTS"
