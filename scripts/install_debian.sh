#!/usr/bin/env bash
# Installs Debian packages the tests need, unless PROGRAM is already there:
#   scripts/install_debian.sh PROGRAM PACKAGE...   (e.g. /usr/bin/redis-server redis-server)
# Idempotent and quiet; uses sudo only when not root.
set -euo pipefail
program=$1
shift
if [ -x "$program" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "==> installing $* (Debian) for the tests"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
test -x "$program"
