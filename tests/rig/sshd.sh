#!/usr/bin/env bash
# A private OpenSSH server with SFTP, for the sftp-sync tests (see ../shared/INFRA.md).
#
#   tests/rig/sshd.sh install         apt-get install openssh-server when sshd is missing (needs root)
#   tests/rig/sshd.sh start DIR       start sshd on a free 127.0.0.1 port and print the port. DIR gets:
#                                       id_ed25519, id_ed25519.pub   client key (authorized for the
#                                                                     current user, root included)
#                                       known_hosts                  "[127.0.0.1]:PORT <host key>"
#                                       ssh_host_ed25519_key(.pub)   host key
#                                       sshd_config, sshd.pid, sshd.log, port
#   tests/rig/sshd.sh stop DIR        stop the sshd started with DIR and drop its open sessions
#                                     (keys and port are kept)
#
# Starting again with the same DIR reuses the keys and, when it is still free, the port, so a
# test can kill the server mid-transfer and bring it back at the same address.
# SSHD_SFTP_FLAGS is passed to internal-sftp (e.g. "-R" for a read-only server, "-P remove,rename"
# to refuse those requests). Never touches the system sshd or /etc/ssh.
# Example: sftp -i DIR/id_ed25519 -o UserKnownHostsFile=DIR/known_hosts -P PORT root@127.0.0.1
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

sshd_bin() {
  command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; } || true
}

install() {
  if [ -z "$(sshd_bin)" ]; then
    echo "installing openssh-server" >&2
    # Debian's package would start the system sshd; policy-rc.d (present in containers) prevents it.
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q openssh-server >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q openssh-server >&2; }
  fi
}

running() {
  local dir=$1
  [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null
}

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

start() {
  local dir=$1
  install
  local bin; bin=$(sshd_bin)
  [ -n "$bin" ] || { echo "sshd not found" >&2; exit 1; }
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  if running "$dir"; then
    echo "sshd already running for $dir" >&2
    cat "$dir/port"
    return
  fi
  mkdir -p /run/sshd  # privilege separation directory
  [ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C happystreams-test-host -f "$dir/ssh_host_ed25519_key"
  [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C happystreams-test-client -f "$dir/id_ed25519"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  chmod 600 "$dir/ssh_host_ed25519_key" "$dir/id_ed25519" "$dir/authorized_keys"

  local port=""
  if [ -f "$dir/port" ] && port_free "$(cat "$dir/port")"; then port=$(cat "$dir/port"); fi
  [ -n "$port" ] || port=$(free_port)

  cat >"$dir/sshd_config" <<EOF
# Private test sshd: loopback only, key auth only, SFTP served in-process.
ListenAddress 127.0.0.1
Port $port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp internal-sftp ${SSHD_SFTP_FLAGS:-}
EOF
  "$bin" -t -f "$dir/sshd_config" >&2
  rm -f "$dir/sshd.pid"
  "$bin" -D -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >>"$dir/sshd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/sshd.pid"
  if ! wait_port 127.0.0.1 "$port" 30; then
    echo "sshd did not start; log:" >&2; cat "$dir/sshd.log" >&2
    kill "$pid" 2>/dev/null || true; exit 1
  fi
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
  echo "$port" >"$dir/port"
  echo "$port"
}

# All processes below PID (the listener's sessions and their sftp children).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"; descendants "$child"
  done
}

stop() {
  local dir=$1
  if [ -f "$dir/sshd.pid" ]; then
    local pid; pid=$(cat "$dir/sshd.pid")
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != sshd ]; then rm -f "$dir/sshd.pid"; return; fi
    # The listener and its per-connection processes: open sessions drop like on a server crash.
    local pids; pids="$pid $(descendants "$pid")"
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    local p
    for p in $pids; do
      [ "$(ps -o comm= -p "$p" 2>/dev/null)" = sshd ] && kill -9 "$p" 2>/dev/null || true
    done
  fi
  rm -f "$dir/sshd.pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?usage: sshd.sh start DIR}" ;;
  stop) stop "${2:?usage: sshd.sh stop DIR}" ;;
  *) sed -n '2,18p' "$0" >&2; exit 64 ;;
esac
