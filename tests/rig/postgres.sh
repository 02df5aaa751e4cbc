#!/usr/bin/env bash
# PostgreSQL 15 with logical decoding and the HappyTimes schema, for the end to end with the real
# Debezium connector (tests/it/happytimes/debezium.rs; see ../shared/INFRA.md).
#
#   tests/rig/postgres.sh install          apt-get install postgresql (no-op when present)
#   tests/rig/postgres.sh serve DIR PORT   create a cluster in DIR (wal_level=logical), create
#                                          role dbz (password dbz, REPLICATION) and database
#                                          happytimes with the schema of
#                                          tests/fixtures/debezium/_sql/01_schema.sql, then serve
#                                          on 127.0.0.1:PORT (time zone UTC) until SIGTERM,
#                                          then stop it (fast shutdown)
#
# It prints "PostgreSQL serving" once the database accepts sessions. As root, the server runs as
# the `postgres` user (PostgreSQL refuses root); DIR is created for it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/postgres" ] && { echo "$dir"; return; }
  done
  return 1
}

install() {
  if ! bindir >/dev/null; then
    echo "installing postgresql from apt" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql >&2
  fi
  bindir
}

# Runs a command as the server's user, from the cluster's directory (the checkout may be in a
# directory only root can enter).
as_owner() {
  if [ "$(id -u)" = 0 ]; then (cd "$dir" && runuser -u postgres -- "$@"); else (cd "$dir" && "$@"); fi
}

serve() {
  dir=$1
  local port=$2 bin
  bin=$(install)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  local data="$dir/data"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  # UTC, whatever the host's zone: `current_date` and the pipeline's epoch days must agree.
  local options=(-c wal_level=logical -c max_wal_senders=4 -c max_replication_slots=4
    -c unix_socket_directories="$dir" -c fsync=off -c autovacuum=off -c timezone=UTC)
  # Set-up on the socket only, so the TCP port opens once everything is ready.
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/setup.log" -w -o "${options[*]} -c listen_addresses=''" start >/dev/null
  as_owner "$bin/psql" -q -h "$dir" -U postgres -v ON_ERROR_STOP=1 -d postgres \
    -c "CREATE ROLE dbz WITH LOGIN REPLICATION PASSWORD 'dbz'" -c "CREATE DATABASE happytimes OWNER dbz"
  # The schema goes in on stdin: the server's user may not be able to read the checkout.
  as_owner "$bin/psql" -q -h "$dir" -U dbz -v ON_ERROR_STOP=1 -d happytimes \
    <"$root/tests/fixtures/debezium/_sql/01_schema.sql" >/dev/null
  as_owner "$bin/pg_ctl" -D "$data" -w -m fast stop >/dev/null
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w \
    -o "${options[*]} -c listen_addresses=127.0.0.1 -p $port" start >/dev/null
  # Serve until SIGTERM (or the server stops): then a fast shutdown, waited for, so the
  # directory can go right after (a smart shutdown would wait for replication clients).
  trap 'as_owner "$bin/pg_ctl" -D "$data" -w -m fast stop >/dev/null 2>&1; exit 0' TERM INT
  local pid
  pid=$(head -1 "$data/postmaster.pid")
  echo "PostgreSQL serving on 127.0.0.1:$port (pid $pid, log $dir/server.log)"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  echo "PostgreSQL stopped; its log:" >&2
  cat "$dir/server.log" >&2
  exit 1
}

case "${1:-}" in
  install) install ;;
  serve) [ $# -eq 3 ] || { echo "usage: postgres.sh serve DIR PORT" >&2; exit 64; }; serve "$2" "$3" ;;
  *) sed -n '2,13p' "$0" >&2; exit 64 ;;
esac
