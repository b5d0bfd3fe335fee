#!/usr/bin/env bash
# Side-by-side benchmark: Starling vs RabbitMQ Web-STOMP, same load generator, same machine.
#
#   benchmarks/run.sh [--reps N] [--quick] [--duration S] [--warmup S] [--only REGEX]
#                     [--results DIR] [--scratch-path DIR] [--no-build] [--loadtest PATH] [--no-report]
#
# Builds release binaries (`swift build -c release`), starts a private RabbitMQ (benchmarks/rabbitmq.sh)
# and a release Starling (port 18080, plain STOMP off), runs every scenario with permessage-deflate off
# and on, alternating between the brokers, N repetitions each (JSON per run in the results directory),
# stops both brokers (also on Ctrl-C or failure) and writes docs/benchmarks.md + docs/charts/*.png
# through benchmarks/report.py. See benchmarks/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ORIG_CMD="benchmarks/run.sh${*:+ $*}"

REPS=3
QUICK=0
DURATION=""
WARMUP=""
ONLY=""
RESULTS=""
SCRATCH=""
BUILD=1
LOADTEST=""
REPORT=1
STARLING_PORT="${STARLING_PORT:-18080}"
export RMQ_WS_PORT="${RMQ_WS_PORT:-15674}"
export RMQ_DIR="${RMQ_DIR:-$HERE/.rabbitmq}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) REPS="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --results) RESULTS="$2"; shift 2 ;;
        --scratch-path) SCRATCH="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --loadtest) LOADTEST="$2"; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    # smoke run: 1 repetition, 3 s windows, and 2,000 instead of 10,000 connections where a scenario
    # needs 10,000 (the scenario names say the size)
    REPS_DEFAULT=1; DURATION="${DURATION:-3}"; WARMUP="${WARMUP:-1}"; HOLD="${HOLD:-3}"
    N_TOPICS="${N_TOPICS:-20}"; N_CONN="${N_CONN:-2000}"
    [[ "$REPS" == 3 ]] && REPS=$REPS_DEFAULT
else
    DURATION="${DURATION:-10}"; WARMUP="${WARMUP:-2}"; HOLD="${HOLD:-$DURATION}"
    N_TOPICS="${N_TOPICS:-100}"; N_CONN="${N_CONN:-10000}"
fi

log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- scenarios
# name | deflate settings | loadtest arguments (shared by both brokers; --url/--login/... added per broker)
# The fixed-rate scenarios offer the same load to both brokers. The fanouts offer 5,000 deliveries/s, which
# RabbitMQ keeps up with on a 2-core machine, so latency and CPU compare at equal work; rooms is a chat
# load of 1 msg/s per member. The "-max" scenarios publish as fast as the broker accepts (rate 0) and
# measure capacity.
FANOUT1_RATE="${FANOUT1_RATE:-5}"        # msgs/s to 1 topic     -> x1000 = 5,000 deliveries/s
FANOUT100_RATE="${FANOUT100_RATE:-50}"   # msgs/s over the topics -> x100 = 5,000 deliveries/s
ROOMS_RATE="${ROOMS_RATE:-1}"            # msgs/s per member: 2,000 members -> 2,000 sent/s, x20 = 40,000 deliveries/s
                                         # (below 1 the load generator's start jitter (< 1 s) leaves bursts)
QUEUE_RATE="${QUEUE_RATE:-0}"            # 0 = as fast as possible
MAX_IN_FLIGHT="${MAX_IN_FLIGHT:-128}"    # "-max" scenarios: messages in flight per subscription, the same for both
                                         # brokers (at 32 Starling's fan-out is bounded by window/latency, not CPU)
SCENARIOS=(
  "fanout-1x1000|off on|fanout --publishers 1 --topics 1 --subscribers 1000 --rate $FANOUT1_RATE"
  "fanout-${N_TOPICS}x100|off on|fanout --publishers 4 --topics $N_TOPICS --subscribers 100 --rate $FANOUT100_RATE"
  "rooms-100x20|off on|rooms --rooms 100 --members 20 --rate $ROOMS_RATE"
  "queue-4p4c|off on|queue --producers 4 --consumers 4 --queues 1 --ack client-individual --rate $QUEUE_RATE"
  "queue-4p4c-persistent|off|queue --producers 4 --consumers 4 --queues 4 --ack client-individual --persistent --payload 1024 --rate $QUEUE_RATE"
  "connections-$((N_CONN / 1000))k|off on|connections --connections $N_CONN --heartbeat 10000 --hold $HOLD --source-addresses 4 --workers 2"
  "fanout-1x1000-max|off|fanout --publishers 1 --topics 1 --subscribers 1000 --rate 0 --in-flight $MAX_IN_FLIGHT"
  "fanout-${N_TOPICS}x100-max|off|fanout --publishers 4 --topics $N_TOPICS --subscribers 100 --rate 0 --in-flight $MAX_IN_FLIGHT"
)

# ---------------------------------------------------------------- build
cd "$ROOT"
SWIFT_ARGS=(-c release)
[[ -n "$SCRATCH" ]] && SWIFT_ARGS+=(--scratch-path "$SCRATCH")
if [[ $BUILD == 1 ]]; then
    log "building: swift build ${SWIFT_ARGS[*]}"
    swift build "${SWIFT_ARGS[@]}"
fi
BIN="${SCRATCH:-$ROOT/.build}/release"   # the symlink swift build maintains to <triple>/release
[[ -d "$BIN" ]] || BIN="$(swift build "${SWIFT_ARGS[@]}" --show-bin-path)"
STARLING_BIN="$BIN/starling"
LOADTEST="${LOADTEST:-$BIN/starling-loadtest}"
[[ -x "$STARLING_BIN" ]] || { echo "run.sh: $STARLING_BIN not built" >&2; exit 1; }
[[ -x "$LOADTEST" ]] || { echo "run.sh: $LOADTEST not built" >&2; exit 1; }

python3 -c 'import matplotlib' 2>/dev/null || { log "installing matplotlib (pip)"; python3 -m pip install --quiet matplotlib; }

RESULTS="${RESULTS:-$HERE/results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS"
INDEX="$RESULTS/runs.jsonl"
: > "$INDEX"

# ---------------------------------------------------------------- brokers
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # Starling and the loadtest inherit this
STARLING_PID=""
RMQ_STARTED=0
STARLING_DATA="$(mktemp -d /tmp/starling-bench-data.XXXXXX)"
stop_all() { # idempotent
    if [[ -n "$STARLING_PID" ]] && kill -0 "$STARLING_PID" 2>/dev/null; then
        log "stopping Starling ($STARLING_PID)"
        kill -TERM "$STARLING_PID" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$STARLING_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$STARLING_PID" 2>/dev/null || true
    fi
    STARLING_PID=""
    rm -rf "$STARLING_DATA"
    if [[ $RMQ_STARTED == 1 ]]; then
        [[ -d "$RMQ_DIR/log" ]] && cp -r "$RMQ_DIR/log" "$RESULTS/rabbitmq-log" 2>/dev/null || true
        "$HERE/rabbitmq.sh" stop || true
        RMQ_STARTED=0
    fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_starling() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$STARLING_PORT") 2>/dev/null; then
        echo "run.sh: 127.0.0.1:$STARLING_PORT is already in use (set STARLING_PORT)" >&2; exit 1
    fi
    log "starting Starling: $STARLING_BIN --port $STARLING_PORT --stomp-port off"
    "$STARLING_BIN" --host 127.0.0.1 --port "$STARLING_PORT" --stomp-port off --data-dir "$STARLING_DATA" \
        --log-level warning > "$RESULTS/starling.log" 2>&1 &
    STARLING_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$STARLING_PORT") 2>/dev/null && kill -0 "$STARLING_PID" 2>/dev/null; then
            log "Starling up (pid $STARLING_PID), $(grep -i 'open files' /proc/$STARLING_PID/limits | tr -s ' ')"
            return 0
        fi
        kill -0 "$STARLING_PID" 2>/dev/null || { cat "$RESULTS/starling.log" >&2; echo "Starling exited" >&2; exit 1; }
        sleep 0.1
    done
    echo "Starling did not open port $STARLING_PORT" >&2; exit 1
}

RMQ_STARTED=1
RMQ_PID="$("$HERE/rabbitmq.sh" start)"
start_starling

# ---------------------------------------------------------------- machine + versions
ORIG_CMD="$ORIG_CMD" REPS="$REPS" DURATION="$DURATION" WARMUP="$WARMUP" QUICK="$QUICK" ROOT="$ROOT" \
RMQ_PID="$RMQ_PID" STARLING_PID="$STARLING_PID" LOADTEST="$LOADTEST" RABBITMQ_VERSION="$("$HERE/rabbitmq.sh" version)" \
STARLING_CMD="${STARLING_BIN#"$ROOT"/} --host 127.0.0.1 --port $STARLING_PORT --stomp-port off --data-dir <tmp> --log-level warning" \
python3 - "$RESULTS/meta.json" <<'EOF'
import json, os, platform, re, subprocess, sys
E = os.environ
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception: return ""
cpu = re.search(r"^model name\s*:\s*(.*)$", open("/proc/cpuinfo").read(), re.M)
mem = re.search(r"^MemTotal:\s*(\d+) kB", open("/proc/meminfo").read(), re.M)
def limits(pid):
    try: return " ".join(l for l in open(f"/proc/{pid}/limits") if "open files" in l.lower()).split()
    except Exception: return []
json.dump({
  "command": E["ORIG_CMD"],
  "reps": int(E["REPS"]), "duration": float(E["DURATION"]), "warmup": float(E["WARMUP"]), "quick": E["QUICK"] == "1",
  "date": sh("date -u +%Y-%m-%dT%H:%MZ"),
  "loadavgStart": open("/proc/loadavg").read().split()[:3],
  "nproc": os.cpu_count(),
  "cpu": cpu.group(1) if cpu else "unknown",
  "memBytes": int(mem.group(1)) * 1024 if mem else 0,
  "kernel": platform.release(),
  "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
  "rabbitmq": E["RABBITMQ_VERSION"],
  "swift": sh("swift --version 2>&1 | head -1"),
  "python": platform.python_version(),
  "starlingCommit": sh(f"git -C {E['ROOT']} rev-parse --short HEAD"),
  "starlingCommand": E["STARLING_CMD"],
  "rabbitmqConfig": open(os.path.join(E["RMQ_DIR"], "rabbitmq.conf")).read(),
  "rabbitmqAdvancedConfig": open(os.path.join(E["RMQ_DIR"], "advanced.config")).read(),
  "rabbitmqOpenFiles": limits(E["RMQ_PID"])[3:5],
  "starlingOpenFiles": limits(E["STARLING_PID"])[3:5],
  "loadtest": os.path.relpath(E["LOADTEST"], E["ROOT"]),
}, open(sys.argv[1], "w"), indent=2)
EOF

# ---------------------------------------------------------------- runs
broker_args() { # broker -> url + credentials
    case "$1" in
        starling) echo "--url ws://127.0.0.1:$STARLING_PORT/ws" ;;
        rabbitmq) echo "--url ws://127.0.0.1:$RMQ_WS_PORT/ws --login guest --passcode guest --host /" ;;
    esac
}
broker_pid() {
    case "$1" in
        starling) echo "$STARLING_PID" ;;
        rabbitmq) "$HERE/rabbitmq.sh" pid ;;
    esac
}

cpu_ticks() { # pid -> utime+stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
wait_idle() { # pid: until the broker uses < 5 % of a core over a second (at most 60 s), so that a
              # backlog left by the previous run is not billed to the next one
    local pid="$1" hz; hz="$(getconf CLK_TCK)"
    local t0=$SECONDS a b
    while (( SECONDS - t0 < 60 )); do
        a="$(cpu_ticks "$pid")"; sleep 1; b="$(cpu_ticks "$pid")"
        (( (b - a) * 100 < hz * 5 )) && return 0
    done
    log "warning: pid $pid still busy after 60 s"
}

stop_starling() {
    [[ -n "$STARLING_PID" ]] || return 0
    kill -TERM "$STARLING_PID" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$STARLING_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$STARLING_PID" 2>/dev/null || true
    STARLING_PID=""
}

fresh_broker() { # broker: restart it, so memory per connection is measured on a process that ran nothing else
    case "$1" in
        starling) stop_starling; start_starling ;;
        rabbitmq) "$HERE/rabbitmq.sh" stop >/dev/null || true; RMQ_PID="$("$HERE/rabbitmq.sh" start)" ;;
    esac
}

run_one() { # scenario-name args deflate broker rep
    local name="$1" args="$2" deflate="$3" broker="$4" rep="$5"
    # RSS deltas mean nothing on a process whose allocator kept the memory of earlier runs
    [[ "$name" == connections* ]] && fresh_broker "$broker"
    local pid; pid="$(broker_pid "$broker")" || { log "$broker is not running"; exit 1; }
    kill -0 "$pid" 2>/dev/null || { log "$broker (pid $pid) is not running"; exit 1; }
    # Both brokers share the machine: wait until neither is still working off a backlog from its last run.
    local other
    for other in starling rabbitmq; do
        local other_pid; other_pid="$(broker_pid "$other" 2>/dev/null)" || continue
        [[ -n "$other_pid" ]] && kill -0 "$other_pid" 2>/dev/null && wait_idle "$other_pid"
    done
    local base="$RESULTS/${name}__deflate-${deflate}__${broker}__rep${rep}"
    local timing="--duration $DURATION --warmup $WARMUP"
    [[ "$name" == connections* ]] && timing="--warmup 0"
    # shellcheck disable=SC2206
    local cmd=("$LOADTEST" $args $(broker_args "$broker") --deflate "$deflate" $timing --quiet
               --json "$base.json" --server-pid "$pid")
    rm -f "$base.json"
    local t0=$SECONDS rc=0 load; load="$(cut -d' ' -f1 /proc/loadavg)"
    "${cmd[@]}" > "$base.log" 2>&1 || rc=$?
    local took=$((SECONDS - t0))
    local status=ok
    case $rc in
        0) status=ok ;;
        1) status=verification-failed ;;
        2) status=bad-usage ;;
        3) status=refused ;;
        *) status="exit-$rc" ;;
    esac
    log "$(printf '%-16s deflate=%-3s %-8s rep %s: %-20s %3ss  %s' "$name" "$deflate" "$broker" "$rep" "$status" "$took" \
        "$(grep -m1 -iE 'delivered|connections' "$base.log" | cut -c1-90 || true)")"
    local shown="${cmd[*]}"
    shown="${shown//$ROOT\//}"; shown="${shown//--server-pid $pid/--server-pid <pid>}"; shown="${shown//$RESULTS\//<results>/}"
    NAME="$name" DEFLATE="$deflate" BROKER="$broker" REP="$rep" RC="$rc" STATUS="$status" TOOK="$took" \
    BASE="$(basename "$base")" SHOWN="$shown" LOAD="$load" python3 - "$INDEX" <<'EOF'
import json, os, sys
E = os.environ
rec = {"scenario": E["NAME"], "deflate": E["DEFLATE"] == "on", "broker": E["BROKER"], "rep": int(E["REP"]),
       "exit": int(E["RC"]), "status": E["STATUS"], "seconds": int(E["TOOK"]),
       "loadavg": float(E["LOAD"]), "json": E["BASE"] + ".json", "log": E["BASE"] + ".log", "command": E["SHOWN"]}
open(sys.argv[1], "a").write(json.dumps(rec) + "\n")
EOF
    # a broker that died during the run ends the benchmark (its later figures would be meaningless)
    kill -0 "$pid" 2>/dev/null || { log "$broker (pid $pid) died during $name"; exit 1; }
}

total=0
for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name deflates args <<<"$entry"
    [[ -n "$ONLY" && ! "$name" =~ $ONLY ]] && continue
    n_deflate=$(wc -w <<<"$deflates")
    total=$((total + 2 * n_deflate * REPS))
done
log "results: $RESULTS ($total runs, ${DURATION}s measured each, $REPS reps)"

for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name deflates args <<<"$entry"
    [[ -n "$ONLY" && ! "$name" =~ $ONLY ]] && continue
    for deflate in $deflates; do
        for rep in $(seq 1 "$REPS"); do
            # alternate which broker goes first, so neither always runs on a "warm" machine
            if (( rep % 2 == 1 )); then order=(starling rabbitmq); else order=(rabbitmq starling); fi
            for broker in "${order[@]}"; do
                run_one "$name" "$args" "$deflate" "$broker" "$rep"
            done
        done
    done
done

log "runs done; stopping brokers"
stop_all
if [[ $REPORT == 1 ]]; then
    python3 "$HERE/report.py" "$RESULTS" --docs "$ROOT/docs"
fi
log "done: $RESULTS"
