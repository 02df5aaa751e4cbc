# Shared helpers for the test rig scripts (sourced, not run).
# Tools (Python venv with test services) live outside the clone so repeated runs reuse them.
HAPPYSTREAMS_TOOLS=${HAPPYSTREAMS_TOOLS:-$HOME/.cache/happystreams/tools}

tools_venv() {
  local venv="$HAPPYSTREAMS_TOOLS/venv"
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$HAPPYSTREAMS_TOOLS"
    python3 -m venv "$venv" >&2
  fi
  echo "$venv"
}

# A TCP port that is free on loopback right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port HOST PORT SECONDS: wait until something accepts connections.
wait_port() {
  python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
while time.time() < deadline:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# pip_venv VENV WHAT PIN...: (re)install the pinned packages into the venv (created if missing),
# write its resolved set to VENV/versions.txt, and say how long it took (on stderr).
pip_venv() {
  local venv=$1 what=$2 started=$SECONDS
  shift 2
  mkdir -p "$HAPPYSTREAMS_TOOLS"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  echo "installing $* into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  "$venv/bin/pip" freeze --disable-pip-version-check >"$venv/versions.txt"
  echo "$what installed in $((SECONDS - started)) s; versions in $venv/versions.txt" >&2
}
