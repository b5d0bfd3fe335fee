#!/usr/bin/env bash
# Sets up and runs every test: the Swift suites (unit + in-process end-to-end) and the end-to-end suite in
# tests/e2e, where third-party clients (stomp.py over TCP and WebSocket, websockets with permessage-deflate)
# talk to a real server process; then the browser suite (tests/browser: starling.js and the chat page in headless
# Chromium). Then a short libFuzzer run (scripts/fuzz.sh; STARLING_SKIP_FUZZ=1 skips it) and the delivery-path regression gate (benchmarks/guard.sh: malloc counts of
# the fan-out path against Benchmarks/Thresholds; ~8 min of release build on a fresh clone). Set
# STARLING_SKIP_GUARD=1 to skip the gate locally.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test

swift build --build-tests
swift test --skip-build

STARLING_BIN="$PWD/.build/debug/starling" STARLING_LOADTEST_BIN="$PWD/.build/debug/starling-loadtest" \
    python3 -m pytest -q -p no:cacheprovider tests/e2e benchmarks/test_report.py

# The browser client and the chat page in headless Chromium against a real server (must run here, not skip).
STARLING_BIN="$PWD/.build/debug/starling" STARLING_REQUIRE_BROWSER=1 python3 -m pytest -q -p no:cacheprovider tests/browser

# libFuzzer smoke run of the STOMP parser, the WebSocket frame decoder and the deflate path (docs/fuzzing.md).
if [ "${STARLING_SKIP_FUZZ:-0}" != "1" ]; then
    scripts/fuzz.sh --seconds 20
fi

if [ "${STARLING_SKIP_GUARD:-0}" != "1" ]; then
    benchmarks/guard.sh
fi
