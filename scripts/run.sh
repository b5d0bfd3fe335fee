#!/usr/bin/env bash
# Sets up and runs Starling on its embedded defaults: ws://127.0.0.1:8080/ws, STOMP on 127.0.0.1:61613,
# the web client at http://127.0.0.1:8080/. Extra arguments are passed to the server (see `starling --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product starling
exec .build/release/starling "$@"
