#!/usr/bin/env bash
# Installs Chromium (Debian package) for tests/test_site_browser.py; does nothing when it is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "==> installing chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Fonts are only recommended by the package; pages and screenshots need real glyphs.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium
