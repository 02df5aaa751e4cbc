#!/usr/bin/env bash
# moto, an in-memory S3-compatible server, for the lake-on-S3 tests (see ../shared/INFRA.md).
#
#   tests/rig/moto.sh install         install moto[server] into the tools venv (no-op when present)
#   tests/rig/moto.sh bin             print the moto_server path (installs first if needed)
#   tests/rig/moto.sh start [DIR]     start moto_server on a free loopback port; DIR gets moto.pid,
#                                     moto.log and endpoint; prints http://127.0.0.1:PORT
#   tests/rig/moto.sh stop [DIR]      stop the server started with DIR
#
# DIR defaults to $MOTO_DIR, else a new mktemp directory (printed on stderr).
# Buckets live in memory: every start is an empty store. Any credentials are accepted;
# use path-style addressing. Parts under 5 MiB (except the last) are rejected like on AWS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

moto_bin() {
  local venv; venv=$(tools_venv)
  echo "$venv/bin/moto_server"
}

install() {
  local venv; venv=$(tools_venv)
  if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import moto.server, boto3' 2>/dev/null; then
    echo "installing moto[server]==5.2.5 into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2
  fi
}

rig_dir() {
  local dir=${1:-${MOTO_DIR:-}}
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/moto.XXXXXX")
    echo "moto dir: $dir" >&2
  fi
  mkdir -p "$dir"
  echo "$dir"
}

start() {
  local dir; dir=$(rig_dir "${1:-}")
  install
  local port; port=$(free_port)
  "$(moto_bin)" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  # Ready when it answers HTTP, not merely when the port is open.
  if ! wait_port 127.0.0.1 "$port" 60 || ! "$(tools_venv)/bin/python" - "$port" <<'PY'
import sys, time, urllib.request, urllib.error
url, deadline = f"http://127.0.0.1:{sys.argv[1]}/", time.time() + 30
while time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # any HTTP answer means it serves requests
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
  then
    echo "moto_server did not start; log:" >&2; cat "$dir/moto.log" >&2
    stop "$dir"; exit 1
  fi
  echo "http://127.0.0.1:$port" >"$dir/endpoint"
  echo "http://127.0.0.1:$port"
}

stop() {
  local dir=${1:-${MOTO_DIR:-}}
  [ -n "$dir" ] || { echo "usage: moto.sh stop DIR (or set MOTO_DIR)" >&2; exit 64; }
  if [ -f "$dir/moto.pid" ]; then
    local pid; pid=$(cat "$dir/moto.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/moto.pid"
}

case "${1:-}" in
  install) install ;;
  bin) install; moto_bin ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) sed -n '2,12p' "$0" >&2; exit 64 ;;
esac
