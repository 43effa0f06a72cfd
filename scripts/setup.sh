#!/usr/bin/env bash
# Install everything synfs needs on a fresh Debian/Ubuntu machine: system packages for FUSE
# (when root; otherwise print the exact command), a virtualenv in .venv and the Python
# packages. Idempotent: a second run only checks. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=(fuse3 libfuse3-dev pkg-config gcc)
# Debian's own python3 lacks venv/headers until these are installed; pyenv builds have them.
"$PY" -c "import ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')" 2>/dev/null \
  || APT_PACKAGES+=(python3-venv python3-dev)
extras="emulator"
if [ "${1:-}" = "--test" ]; then
  extras="test"
  APT_PACKAGES+=(rsync)   # the write tests run rsync -a against real mounts
  APT_PACKAGES+=(systemd)  # systemd-analyze verify checks the units in systemd/
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages; run as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: synfs needs Python >= 3.11 ($PY is $("$PY" -V 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.synfs-setup-$extras-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
