#!/usr/bin/env bash
# Installs Chromium (Debian package) for tests/test_site_browser.py; does nothing when it is already there.
# Fonts are only recommended by the package; pages and screenshots need real glyphs.
set -euo pipefail
exec bash "$(dirname "$0")/install_debian.sh" /usr/bin/chromium chromium fonts-liberation fonts-dejavu-core
