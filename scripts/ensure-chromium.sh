#!/usr/bin/env bash
# Make sure Debian's chromium is installed, for the sketch pad's browser tests (tests/api/test_web_pad.py).
# Playwright drives it by its executable path (/usr/bin/chromium); Playwright never downloads a browser
# of its own (the Makefile sets PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1). Idempotent.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing chromium (Debian package)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ] || { echo "chromium missing after install" >&2; exit 1; }
