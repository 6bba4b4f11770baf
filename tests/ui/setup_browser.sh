#!/usr/bin/env bash
# Idempotent set-up for the real-browser test (tests/ui/test_browser.py): Debian's Chromium
# and the npm package playwright-core (which drives it; no browser download of its own).
# Called by .ci/run before `make test`; safe to run again (it installs only what is missing).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        echo "setup_browser: installing Debian chromium"
        $SUDO apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
            || echo "setup_browser: could not install chromium; the browser test will skip"
    else
        echo "setup_browser: no apt-get; the browser test will skip unless chromium is on PATH"
    fi
fi

if [ ! -d node_modules/playwright-core ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "setup_browser: installing playwright-core into tests/ui/node_modules"
        npm install --no-save --no-audit --no-fund --silent playwright-core@1.65.1 \
            || echo "setup_browser: could not install playwright-core"
    else
        echo "setup_browser: no npm; the browser test will skip"
    fi
fi
