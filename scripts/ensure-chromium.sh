#!/usr/bin/env bash
# Makes Debian's Chromium available at /usr/bin/chromium for the browser test of the
# console (tests/e2e/test_console_browser.py). Playwright's own browser download does
# not work offline; the Python package drives this system build instead.
# Idempotent: a machine that already has it is left as it is.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "ensure-chromium: installing Chromium from Debian's packages" >&2
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "ensure-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) ready" >&2
