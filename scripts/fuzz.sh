#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for a while (docs/fuzzing.md).
#
#   scripts/fuzz.sh                          every target, 60 s each
#   scripts/fuzz.sh --seconds 600 --target FuzzDeflate
#   scripts/fuzz.sh --merge                  also add the inputs that found new coverage to Fuzz/corpus/
#
# Options: --seconds N (per target, default 60), --target NAME (repeatable; default all three), --merge,
# --no-build (reuse Fuzz/.build), --jobs N (parallel libFuzzer workers per target, default 1).
# Each target runs on a copy of its corpus in a temporary directory, so the committed corpus changes only with
# --merge. A crash (or a property violation, a leak, a timeout, an out-of-memory) is copied to Fuzz/crashes/ and
# makes the script exit non-zero; the line to reproduce it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(FuzzSTOMPParser FuzzWebSocketFrames FuzzDeflate)
seconds=60
targets=()
merge=0
build=1
jobs=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --target) targets+=("$2"); shift 2 ;;
        --merge) merge=1; shift ;;
        --no-build) build=0; shift ;;
        --jobs) jobs="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "unknown target $target (${all_targets[*]})" >&2; exit 2; }
done

# Longest input libFuzzer makes, per target: enough for several frames (and a few KiB of compressed data).
max_len() {
    case "$1" in
        FuzzDeflate) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

if [ "$build" = 1 ]; then
    scripts/install-deps.sh  # zlib and OpenSSL headers, as for the main package
    # `--sanitize=fuzzer` makes SwiftPM link libFuzzer's main instead of the target's; the -Xswiftc flag is what
    # instruments the Swift code: swiftc keeps only the last -sanitize= it is given, and SwiftPM's own
    # `--sanitize=address` would come after `fuzzer`. -O after SwiftPM's -Onone: an optimised build runs ~10x
    # more inputs per second, while the debug configuration keeps -enable-testing (@testable import) and asserts.
    started=$(date +%s)
    for target in "${targets[@]}"; do
        nice -n 10 swift build --package-path Fuzz -c debug --sanitize=fuzzer \
            -Xswiftc -sanitize=fuzzer,address -Xswiftc -O --product "$target" 2>&1 \
            | grep -v "ld.gold: warning: Cannot export local symbol" || true
        [ -x "Fuzz/.build/debug/$target" ] || { echo "build of $target failed" >&2; exit 1; }
    done
    echo "fuzz: built ${targets[*]} in $(( $(date +%s) - started )) s"
fi

# Swift's own backtracer would run inside libFuzzer's crash handler (and trip AddressSanitizer there).
export SWIFT_BACKTRACE=enable=no

work=$(mktemp -d "${TMPDIR:-/tmp}/starling-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p Fuzz/crashes
failed=()
total_runs=0
for target in "${targets[@]}"; do
    binary="$PWD/Fuzz/.build/debug/$target"
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp -r "Fuzz/corpus/$target/." "$work/$target/corpus/"
    # Earlier crashes first, as regressions (each is run once).
    reproducers=()
    for file in Fuzz/crashes/"$target"-*; do [ -f "$file" ] && reproducers+=("$file"); done
    if [ ${#reproducers[@]} -gt 0 ]; then
        if ! "$binary" -runs=1 "${reproducers[@]}" >"$work/$target/regressions.log" 2>&1; then
            echo "fuzz: $target: a saved reproducer in Fuzz/crashes still crashes:" >&2
            tail -n 40 "$work/$target/regressions.log" >&2
            failed+=("$target")
            continue
        fi
    fi
    echo "fuzz: $target for ${seconds} s (max_len $(max_len "$target"), $jobs job(s))"
    log="$work/$target/fuzz.log"
    status=0
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: a bomb that got past a limit shows up as OOM.
    common=(-max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
            -artifact_prefix="$work/$target/artifacts/")
    if [ "$jobs" -gt 1 ]; then
        (cd "$work/$target" && nice -n 10 "$binary" "${common[@]}" -max_total_time="$seconds" -jobs="$jobs" \
            -workers="$jobs" corpus) >"$log" 2>&1 || status=$?
        cat "$work/$target"/fuzz-*.log >>"$log" 2>/dev/null || true
    else
        nice -n 10 "$binary" "${common[@]}" -max_total_time="$seconds" "$work/$target/corpus" >"$log" 2>&1 || status=$?
    fi
    # (No match is not an error here: set -e with pipefail would end the script silently.)
    runs=$({ grep -h "stat::number_of_executed_units" "$log" || true; } | awk '{ sum += $2 } END { print sum + 0 }')
    coverage=$({ grep -hoE "cov: [0-9]+ ft: [0-9]+" "$log" || true; } | tail -n 1)
    corpus=$(find "$work/$target/corpus" -type f | wc -l)
    total_runs=$((total_runs + runs))
    echo "fuzz: $target: $runs executions, ${coverage:-no coverage line}, corpus $corpus inputs, exit $status"
    crashes=("$work/$target/artifacts"/*)
    if [ "$status" -ne 0 ] || [ -e "${crashes[0]}" ]; then
        failed+=("$target")
        echo "fuzz: $target FAILED; libFuzzer's report:" >&2
        grep -v -E "^#[0-9]+ +(NEW|REDUCE|pulse)" "$log" | tail -n 60 >&2
        for crash in "${crashes[@]}"; do
            [ -f "$crash" ] || continue
            saved="Fuzz/crashes/$target-$(basename "$crash")"
            cp "$crash" "$saved"
            echo "fuzz: reproducer saved as $saved; run it with: $binary $saved" >&2
            echo "fuzz: minimise it with: $binary -minimize_crash=1 -runs=100000 -exact_artifact_path=$saved.min $saved" >&2
        done
    fi
    if [ "$merge" = 1 ]; then
        "$binary" -merge=1 -max_len="$(max_len "$target")" "Fuzz/corpus/$target" "$work/$target/corpus" \
            >"$work/$target/merge.log" 2>&1
        echo "fuzz: $target: corpus merged, now $(find "Fuzz/corpus/$target" -type f | wc -l) inputs"
    fi
done
rmdir Fuzz/crashes 2>/dev/null || true

echo "fuzz: $total_runs executions in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crashes"
