#!/usr/bin/env bash
# Delivery-path regression gate: builds Benchmarks/ (package-benchmark, release), runs every benchmark once,
# prints the results (mallocs, wall clock, throughput) and checks the malloc metrics against the static
# thresholds in Benchmarks/Thresholds/. Exit 0 when within or better, 2 on a regression, 1 when the run fails.
#
#   benchmarks/guard.sh            run and check (what CI runs)
#   benchmarks/guard.sh --update   run and re-record Benchmarks/Thresholds/ (malloc metrics only); commit them
#   benchmarks/guard.sh --filter fanout-ws   run/check only benchmarks matching a regex (both modes)
#
# STARLING_BENCH_SCRATCH overrides the build folder (default Benchmarks/.build-bench).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
package="$root/Benchmarks"
scratch=${STARLING_BENCH_SCRATCH:-$package/.build-bench}
# Only these metrics are kept in the thresholds files, so only they are checked: malloc counts are
# deterministic enough to gate; time and throughput on 2 shared cores are not.
gated_metrics='mallocCountTotal mallocsPerKiloDelivery'

update=false
filter=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --update) update=true ;;
        --filter) filter=(--filter "$2"); shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "guard.sh: unknown argument '$1'" >&2; exit 64 ;;
    esac
    shift
done

# The project's build needs the zlib and OpenSSL headers (as scripts/run.sh installs them).
if ! pkg-config --exists zlib libcrypto 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq zlib1g-dev libssl-dev pkg-config >/dev/null
fi

benchmark() {
    (cd "$package" && swift package --scratch-path "$scratch" --allow-writing-to-package-directory \
        benchmark "$@")
}

start=$(date +%s)
benchmark baseline update guard --no-progress "${filter[@]}"
benchmark baseline read guard "${filter[@]}"

if $update; then
    benchmark thresholds update guard --path "$package/Thresholds" "${filter[@]}"
    # Keep only the gated metrics in each file.
    python3 - "$package/Thresholds" $gated_metrics <<'PY'
import json, pathlib, sys
folder, keep = pathlib.Path(sys.argv[1]), set(sys.argv[2:])
for path in sorted(folder.glob("*.p90.json")):
    values = {k: v for k, v in json.loads(path.read_text()).items() if k in keep}
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    print(f"{path.name}: {values}")
PY
    echo "guard.sh: thresholds re-recorded in Benchmarks/Thresholds/ ($(( $(date +%s) - start )) s); review and commit them."
    exit 0
fi

# `swift package` turns every failure of the plugin into exit code 1, so the verdict is read from the
# tool's error name: benchmarkThresholdRegression or benchmarkThresholdImprovement.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
benchmark thresholds check guard --path "$package/Thresholds" "${filter[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))
if [[ $status -eq 0 ]]; then
    echo "guard.sh: PASS, malloc metrics within the thresholds (${elapsed} s)"
elif grep -q benchmarkThresholdRegression "$log"; then
    echo "guard.sh: FAIL, malloc regression on the delivery path, see 'Deviations worse than threshold' above (${elapsed} s)" >&2
    exit 2
elif grep -q benchmarkThresholdImprovement "$log"; then
    echo "guard.sh: PASS, malloc metrics better than the thresholds; record them with benchmarks/guard.sh --update (${elapsed} s)"
else
    echo "guard.sh: FAIL, the benchmark run or the check failed (exit code $status, ${elapsed} s)" >&2
    exit 1
fi
