#!/usr/bin/env bash
# Make sure a headless Chromium is available for tests/warehouse/test_report_renders.py.
# Installs the Debian package `chromium` only when /usr/bin/chromium is missing and we are root
# (CI machines start fresh; developers without root install it themselves or the test skips locally).
# Idempotent; independent of the Makefile. Usage: bash scripts/ensure_chromium.sh
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "chromium missing and not root: install the Debian package 'chromium' to render the report test" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
echo "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
