#!/usr/bin/env bash
# Headless Chromium for the tests that open drift's HTML pages (tests/browser.py): Debian's
# `chromium` package, installed once; skipped when a chromium is already on PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: no chromium and no root apt-get to install it; the browser tests will fail" >&2
    exit 1
fi
echo "setup-browser: installing chromium (Debian)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
