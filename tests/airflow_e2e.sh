#!/usr/bin/env bash
# End-to-end run of the HappyTimes Airflow DAG on real components, nothing stubbed:
#
#   a private OpenSSH server (tests/rig/sshd.sh) holding two partner CSV files, and the
#   HappyTimes stream inputs in the lake: generated traffic of the 14 days before today and of
#   today (`happystreams generate`) through a real broker (tests/rig/tansu.sh) into
#   <tmp>/lake/raw/ (`happystreams lake-sink --raw`), then
#     -> sftp_sync_partner     happystreams sftp-sync lands the files in <tmp>/lake/landing/partner/
#     -> dbt_build             dbt-duckdb builds every model (stg_partner_files into
#                              <tmp>/lake/partner_files/, the HappyTimes staging, dimensions, facts
#                              and marts) and their tests, but the volume anomaly ones
#     -> dbt_source_freshness  dbt source freshness of the raw topics and the partner landing
#        dbt_test_anomaly      the volume anomaly tests of the facts and marts
#        check_freshness_partner_files, check_volume_partner_files
#
# run by `airflow dags test happytimes <today>` (SQLite metadata database in a temporary
# AIRFLOW_HOME). The DAG is then run a second time: sftp-sync must transfer no file again and
# the run must still succeed. Exits non-zero when any task of either run did not succeed.
#
# A third run goes over a copy of the lake in which 90 % of yesterday's clicks, access-log lines
# and social mentions are deleted (a planted volume drop): it must fail in dbt_test_anomaly and
# nowhere else, with the anomaly tests of the activity and sentiment facts and marts failing.
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
tests/rig/tansu.sh install

tmp=$(mktemp -d "${TMPDIR:-/tmp}/happytimes-e2e.XXXXXX")
cleanup() {
  local status=$?
  tests/rig/sshd.sh stop "$tmp/sshd" || true
  tests/rig/tansu.sh stop "$tmp/tansu" || true
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
# No stream runs here, so the lake has no facts/ of the stream (lake-sink --avro): their freshness
# is left out (tests/it/happytimes.rs lands them; airflow/tests/test_dbt_checks.py checks their
# freshness on files it writes).
export HAPPYTIMES_DBT_FRESHNESS_SELECT="source:lake_raw source:lake_landing"
mkdir -p "$AIRFLOW_HOME"
# --- the HappyTimes stream inputs: generated traffic -> Kafka (Tansu) -> lake-sink --raw -> raw/
# The 14 days before today and today itself, as a live pipeline's lake has them: the sources
# are fresh, and yesterday is the latest complete day (the volume anomaly tests judge the day
# before the newest day with rows), judged against the 13 days before it.
days=15
first_day=$(date -u -d "-$((days - 1)) days" +%F)
bootstrap=$(tests/rig/tansu.sh start "$tmp/tansu")
t0=$SECONDS
"$bin" --config "$tmp/happystreams.toml" generate --bootstrap-servers "$bootstrap" --partitions 2 \
  --visitors 120 --days "$days" --start "$first_day" >"$tmp/generate.log" 2>&1 ||
  { cat "$tmp/generate.log" >&2; exit 1; }
raw=""
for source in clicks weblogs social_mentions; do raw+="happytimes.$source=raw/$source,"; done
for table in visitors content ads subscriptions social_outlets; do raw+="happytimes.public.$table=raw/$table,"; done
HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS=6000 "$bin" --config "$tmp/happystreams.toml" lake-sink \
  --bootstrap-servers "$bootstrap" --lake "$tmp/lake" --group-id happytimes-e2e-lake --exit-at-end \
  --raw "${raw%,}" >"$tmp/lake-sink.log" 2>&1 || { cat "$tmp/lake-sink.log" >&2; exit 1; }
tests/rig/tansu.sh stop "$tmp/tansu"
records=$(grep -o '^[0-9]* records produced' "$tmp/generate.log" | cut -d' ' -f1)
landed_rows=$(grep -o 'lake sink stopped: [0-9]* rows' "$tmp/lake-sink.log" | grep -o '[0-9]*')
[ -n "$records" ] && [ "$records" = "$landed_rows" ] ||
  { echo "airflow e2e: generated ${records:-?} records, lake-sink landed ${landed_rows:-?} rows" >&2; exit 1; }
echo "lake: $records generated records ($days days from $first_day to today) landed in raw/ in $((SECONDS - t0)) s"

airflow="$airflow_venv/bin/airflow"
"$airflow" db migrate >"$tmp/db-migrate.log" 2>&1 || { cat "$tmp/db-migrate.log" >&2; exit 1; }

day=$(date -u +%F)
expected="sftp_sync_partner dbt_build dbt_source_freshness dbt_test_anomaly check_freshness_partner_files check_volume_partner_files"

# run_dag N [FAILING_TASK]: one `airflow dags test`; fails unless every expected task succeeded
# and so did the run -- or, given FAILING_TASK, unless that task and the run failed and every
# other task succeeded.
run_dag() {
  local n=$1 failing=${2:-} out="$tmp/dags-test-$1.log" status=0
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
  local ok=1 task state want=success
  if [ -z "$failing" ]; then
    [ "$status" -eq 0 ] || { echo "run $n: airflow dags test exited $status" >&2; ok=0; }
  else
    want=failed
  fi
  state=$(awk '$1 == "dagrun" { print $3 }' "$tmp/states-$n.txt")
  [ "$state" = "$want" ] || { echo "run $n: DagRun state is ${state:-missing}, expected $want" >&2; ok=0; }
  for task in $expected; do
    want=success
    [ "$task" = "$failing" ] && want=failed
    state=$(awk -v t="$task" '$1 == "task" && $2 == t { print $3 }' "$tmp/states-$n.txt")
    [ "$state" = "$want" ] || { echo "run $n: task $task is ${state:-missing}, expected $want" >&2; ok=0; }
  done
  if [ "$(grep -c '^task ' "$tmp/states-$n.txt")" -ne "$(wc -w <<<"$expected")" ]; then
    echo "run $n: unexpected task set:" >&2; grep '^task ' "$tmp/states-$n.txt" >&2; ok=0
  fi
  echo "run $n: $(grep -c ' success$' "$tmp/states-$n.txt") of $(($(wc -w <<<"$expected") + 1)) (tasks + run) succeeded${failing:+, $failing failed as planted,} in $((SECONDS - t0)) s"
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

# The anomaly tests judged yesterday against the 13 days before it and passed (and no source was
# over its error threshold: dbt_source_freshness succeeded).
grep -q 'Found [0-9]* models, [0-9]* data tests, 13 sources' "$tmp/dags-test-2.log" ||
  fail "second run: dbt did not find the project's 13 sources"
# dbt_build's and dbt_test_anomaly's summaries: everything passed, nothing only warned.
summaries=$(grep -Eo 'Done\. PASS=[0-9]+ WARN=[0-9]+ ERROR=[0-9]+ SKIP=[0-9]+' "$tmp/dags-test-2.log")
[ "$(wc -l <<<"$summaries")" -eq 2 ] && ! grep -Ev 'WARN=0 ERROR=0 SKIP=0$' <<<"$summaries" >/dev/null ||
  fail "second run: not every dbt test passed: $(echo $summaries)"
anomaly_tests=$(grep -Eo 'PASS volume_anomaly_[a-z_]+' "$tmp/dags-test-2.log" | sort -u | wc -l)
[ "$anomaly_tests" -eq 9 ] || fail "second run: $anomaly_tests volume anomaly tests passed, expected 9"

# --- a planted volume drop: a copy of the lake without 90 % of yesterday's activity and mentions
planted="$tmp/lake-planted"
cp -a "$tmp/lake" "$planted"
judged=$(date -u -d "$first_day + $((days - 2)) days" +%F)  # yesterday, the day judged
"$(dirname "$dbt_bin")/python" - "$planted" "$judged" <<'PY' || fail "planting the volume drop"
import duckdb, glob, os, sys
lake, day = sys.argv[1], sys.argv[2]
db = duckdb.connect()
count = lambda path: db.execute("select count(*) from read_parquet(?)", [path]).fetchall()[0][0]
kept = total = 0
for table in ("clicks", "weblogs", "social_mentions"):
    for path in glob.glob(f"{lake}/raw/{table}/date={day}/*/*.parquet"):
        total += count(path)
        # Rewritten in place, keeping one record in ten (the lake-sink columns and types stay).
        db.execute(f"copy (select * from read_parquet('{path}') where _offset % 10 = 0) to '{path}.new' (format parquet)")
        kept += count(f"{path}.new")
        os.replace(f"{path}.new", path)
if total == 0:
    sys.exit(f"no raw records on {day}")
print(f"planted: {day}'s clicks, access-log lines and mentions cut from {total} to {kept} records")
PY
export HAPPYTIMES_LAKE_DIR="$planted"
export DBT_TARGET_PATH="$tmp/dbt-planted/target" DBT_LOG_PATH="$tmp/dbt-planted/logs"
run_dag 3 dbt_test_anomaly || fail "third DAG run (planted volume drop)"
failed_tests=$(grep -Eo 'FAIL 1 volume_anomaly_[a-z_]+' "$tmp/dags-test-3.log" | awk '{print $3}' | sort -u)
for model in fct_visitor_activity fct_retention fct_social_sentiment funnel_awareness funnel_advocacy; do
  grep -qx "volume_anomaly_$model" <<<"$failed_tests" ||
    fail "planted run: volume_anomaly_$model did not fail (failed: $(echo $failed_tests))"
done
grep -q 'ALERT happytimes: task dbt_test_anomaly failed' "$tmp/dags-test-3.log" ||
  fail "planted run: no ALERT line for dbt_test_anomaly"
echo "planted run: failed as expected: $(echo $failed_tests)"

if [ -e "$root/dbt/target" ] || [ -e "$root/dbt/logs" ]; then
  fail "dbt wrote target/ or logs/ into the clone"
fi
echo "airflow e2e passed: 2 DAG runs, every task succeeded ($files files, $rows rows landed and modeled; $records generated records modeled; the second sync transferred 0), and a third run with a planted volume drop failed in dbt_test_anomaly only, in $((SECONDS - started)) s"
