#!/usr/bin/env bash
# End-to-end run of the HappyTimes Airflow DAG on real components, nothing stubbed:
#
#   a private OpenSSH server (tests/rig/sshd.sh) holding two partner CSV files
#     -> sftp_sync_partner   happystreams sftp-sync lands them in <tmp>/lake/landing/partner/
#     -> dbt_build           dbt-duckdb builds stg_partner_files into <tmp>/lake/partner_files/
#     -> check_freshness_partner_files, check_volume_partner_files
#
# run by `airflow dags test happytimes <today>` (SQLite metadata database in a temporary
# AIRFLOW_HOME). The DAG is then run a second time: sftp-sync must transfer no file again and
# the run must still succeed. Exits non-zero when any task of either run did not succeed.
#
#   tests/airflow_e2e.sh
#
# HAPPYSTREAMS_BIN   happystreams binary (default: $CARGO_TARGET_DIR/debug/happystreams, built by
#                    `cargo build` / `cargo test`; this script does not build it)
# HAPPYTIMES_E2E_KEEP=1  keep the temporary directory (printed) instead of removing it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
started=$SECONDS

bin=${HAPPYSTREAMS_BIN:-$CARGO_TARGET_DIR/debug/happystreams}
if [ ! -x "$bin" ]; then
  echo "airflow e2e: no happystreams binary at $bin (run cargo build, or set HAPPYSTREAMS_BIN)" >&2
  exit 1
fi
airflow_venv=$(tests/rig/airflow.sh install)
dbt_bin=$(tests/rig/dbt.sh bin)
tests/rig/sshd.sh install

tmp=$(mktemp -d "${TMPDIR:-/tmp}/happytimes-e2e.XXXXXX")
cleanup() {
  local status=$?
  tests/rig/sshd.sh stop "$tmp/sshd" || true
  if [ "${HAPPYTIMES_E2E_KEEP:-}" = 1 ]; then
    echo "airflow e2e: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the partner's SFTP server and its files
port=$(tests/rig/sshd.sh start "$tmp/sshd")
remote="$tmp/remote/outgoing"
mkdir -p "$remote"
now_ms=$(date +%s%3N)
cat >"$remote/orders_1.csv" <<EOF
order_id,event_time,visitor_id,amount
1,$((now_ms - 3000)),v-1,12.50
2,$((now_ms - 2000)),v-2,7.25
3,$((now_ms - 1000)),v-1,3.00
EOF
cat >"$remote/orders_2.csv" <<EOF
order_id,event_time,visitor_id,amount
4,$((now_ms - 500)),v-3,20.00
5,$now_ms,v-4,1.75
EOF
rows=5
files=2

# --- happystreams, DAG and check configuration
cat >"$tmp/happystreams.toml" <<EOF
[lake]
url = "$tmp/lake"

[sftp.sources.partner]
host = "127.0.0.1"
port = $port
user = "root"
key_file = "$tmp/sshd/id_ed25519"
remote_dir = "$remote"
glob = "*.csv"
known_hosts = "$tmp/sshd/known_hosts"
EOF
cat >"$tmp/partners.json" <<'EOF'
["partner"]
EOF
cat >"$tmp/checks.json" <<EOF
{"tables": {"partner_files": {"timestamp_column": "event_time", "timestamp_unit": "ms", "min_rows": $rows}}}
EOF

# --- the environment the DAG's tasks read (airflow/README.md), nothing inherited: no Airflow,
# dbt or happystreams setting (HAPPYSTREAMS_<SECTION>__<KEY>) of the caller applies
unset HAPPYTIMES_LAKE_TABLES HAPPYTIMES_ALERT_WEBHOOK HAPPYTIMES_RETRY_DELAY_SECONDS HAPPYTIMES_DUCKDB_DIR
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AIRFLOW__|DBT_|HAPPYSTREAMS_.*__)' || true)
export AIRFLOW_HOME="$tmp/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the DAGs folder
export HAPPYTIMES_SFTP_CONFIG="$tmp/partners.json"
export HAPPYTIMES_CHECKS_CONFIG="$tmp/checks.json"
export HAPPYTIMES_RETRIES=0
export HAPPYTIMES_CONFIG="$tmp/happystreams.toml"
export HAPPYSTREAMS_BIN="$bin"
export DBT_BIN="$dbt_bin"
export HAPPYTIMES_DBT_DIR="$root/dbt"
export DBT_TARGET_PATH="$tmp/dbt/target"  # dbt writes nothing into the clone
export DBT_LOG_PATH="$tmp/dbt/logs"
export HAPPYTIMES_LAKE_DIR="$tmp/lake"
# This lake holds partner files only; the stream-input models (raw/ from lake-sink) are built
# and checked by the HappyTimes end-to-end test (tests/it/happytimes.rs).
export HAPPYTIMES_DBT_SELECT=stg_partner_files
mkdir -p "$AIRFLOW_HOME"
airflow="$airflow_venv/bin/airflow"
"$airflow" db migrate >"$tmp/db-migrate.log" 2>&1 || { cat "$tmp/db-migrate.log" >&2; exit 1; }

day=$(date -u +%F)
expected="sftp_sync_partner dbt_build check_freshness_partner_files check_volume_partner_files"

# run_dag N: one `airflow dags test`; fails unless the run and every expected task succeeded.
run_dag() {
  local n=$1 out="$tmp/dags-test-$1.log" status=0
  local t0=$SECONDS
  # Bounded: a hung task must not hold CI until the tasks' own 2 h execution timeout.
  timeout --kill-after=30 900 "$airflow" dags test happytimes "$day" >"$out" 2>&1 || status=$?
  # The run's task states, from the metadata database (the newest run of the DAG).
  "$airflow_venv/bin/python" - "$AIRFLOW_HOME/airflow.db" >"$tmp/states-$n.txt" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute(
    "select run_id, state from dag_run where dag_id = 'happytimes' order by id desc limit 1"
).fetchone()
if run is None:
    print("dagrun none none")
    sys.exit()
print("dagrun", run[0], run[1])
for task_id, state in db.execute(
    "select task_id, state from task_instance where dag_id = 'happytimes' and run_id = ? order by task_id",
    (run[0],),
):
    print("task", task_id, state)
PY
  local ok=1 task state
  [ "$status" -eq 0 ] || { echo "run $n: airflow dags test exited $status" >&2; ok=0; }
  state=$(awk '$1 == "dagrun" { print $3 }' "$tmp/states-$n.txt")
  [ "$state" = success ] || { echo "run $n: DagRun state is ${state:-missing}" >&2; ok=0; }
  for task in $expected; do
    state=$(awk -v t="$task" '$1 == "task" && $2 == t { print $3 }' "$tmp/states-$n.txt")
    [ "$state" = success ] || { echo "run $n: task $task is ${state:-missing}" >&2; ok=0; }
  done
  if [ "$(grep -c '^task ' "$tmp/states-$n.txt")" -ne "$(wc -w <<<"$expected")" ]; then
    echo "run $n: unexpected task set:" >&2; grep '^task ' "$tmp/states-$n.txt" >&2; ok=0
  fi
  echo "run $n: $(grep -c ' success$' "$tmp/states-$n.txt") of $(($(wc -w <<<"$expected") + 1)) (tasks + run) succeeded in $((SECONDS - t0)) s"
  if [ "$ok" -ne 1 ]; then
    echo "--- airflow dags test output (last 150 lines) ---" >&2
    tail -n 150 "$out" >&2
    return 1
  fi
}

# sync_summary N: the sftp-sync summary line of run N.
sync_summary() {
  grep -ho 'sftp-sync: [0-9]* files ([0-9.]* MB) transferred, [0-9]* already in the lake, [0-9]* failed' \
    "$tmp/dags-test-$1.log" | tail -n 1
}

fail() { echo "airflow e2e: FAILED: $*" >&2; exit 1; }

run_dag 1 || fail "first DAG run"
s1=$(sync_summary 1)
[[ "$s1" == "sftp-sync: $files files "*", 0 already in the lake, 0 failed" ]] ||
  fail "first run: expected $files files transferred, sftp-sync said: ${s1:-nothing}"
landed=$(find "$tmp/lake/landing/partner" -path '*/date=*' -name '*.csv' | wc -l)
[ "$landed" -eq "$files" ] || fail "first run: $landed files in the lake's landing/partner, expected $files"
find "$tmp/lake/partner_files" -name '*.parquet' | grep -q . || fail "first run: no Parquet under lake/partner_files"

run_dag 2 || fail "second DAG run"
s2=$(sync_summary 2)
[[ "$s2" == "sftp-sync: 0 files (0.0 MB) transferred, $files already in the lake, 0 failed" ]] ||
  fail "second run: expected no new file, sftp-sync said: ${s2:-nothing}"

if [ -e "$root/dbt/target" ] || [ -e "$root/dbt/logs" ]; then
  fail "dbt wrote target/ or logs/ into the clone"
fi
echo "airflow e2e passed: 2 DAG runs, every task succeeded ($files files, $rows rows landed and modeled; the second sync transferred 0) in $((SECONDS - started)) s"
