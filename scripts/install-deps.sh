#!/usr/bin/env bash
# Installs what building and testing Starling needs on a fresh Debian machine of this kind:
# zlib, OpenSSL and SQLite headers (system-library targets) and, with --test, the Python clients of the end-to-end
# tests, headless Chromium (with its WebDriver) for the browser tests, and RabbitMQ (Web-STOMP) for the browser
# client's interoperability test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(zlib1g-dev libssl-dev libsqlite3-dev pkg-config)
[ "${1:-}" = "--test" ] && packages+=(chromium chromium-driver procps iproute2)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
    # Installed by its own script, which keeps Debian from starting a system-wide RabbitMQ service meanwhile.
    benchmarks/rabbitmq.sh install
    python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt -r tests/browser/requirements.txt
fi
