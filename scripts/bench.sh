#!/usr/bin/env bash
# The benchmark command: install what it needs (FUSE and Python packages via setup.sh, plus
# rclone and fio from apt and matplotlib/py-spy from the `bench` extra), then run every
# scenario of bench/ against one emulator + SeaweedFS it starts, print the ratios and write
# docs/benchmarks.md, docs/benchmarks.png and docs/benchmarks.json. Needs root (drop_caches,
# FUSE mounts). Extra arguments go to `python -m bench.run` (e.g. --reps 5 --skip-metadata).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != "0" ]; then
  echo "bench: run as root (it drops the page cache and reads /proc of the daemons)" >&2
  exit 1
fi
bash scripts/setup.sh --test
missing=()
for pkg in rclone fio; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
stamp=".venv/.synfs-bench-$(sha256sum setup.cfg | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q -e ".[bench]"
  touch "$stamp"
fi
exec .venv/bin/python -m bench.run "$@"
