#!/usr/bin/env bash
# dbt (dbt-core + dbt-duckdb, and openlineage-dbt for `dbt-ol`) in its own venv, for the
# HappyTimes dbt project (see dbt/README.md).
#
#   tests/rig/dbt.sh install          create $HAPPYSTREAMS_TOOLS/dbt-venv with dbt-core and
#                                     dbt-duckdb (no-op when present); prints the venv path
#   tests/rig/dbt.sh bin              print the dbt binary path (installs first if needed)
#
# dbt-core 1.12 does not install offline (a build dependency downloads from the internet), so
# dbt-core stays on 1.11. The pins below resolved together on Python 3.11 from PyPI alone; the
# full resolved set is written to the venv's versions.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

DBT_CORE_VERSION=1.11.16
DBT_DUCKDB_VERSION=1.11.1
DUCKDB_VERSION=2.0.1
# The OpenLineage dbt integration: `dbt-ol build` reports each model's lineage (docs/OPERATIONS.md).
OPENLINEAGE_DBT_VERSION=1.54.0
PINS=(
  "dbt-core==$DBT_CORE_VERSION"
  "dbt-duckdb==$DBT_DUCKDB_VERSION"
  "duckdb==$DUCKDB_VERSION"
  "openlineage-dbt==$OPENLINEAGE_DBT_VERSION"
)

dbt_venv_dir() { echo "$HAPPYSTREAMS_TOOLS/dbt-venv"; }

installed() {
  local venv; venv=$(dbt_venv_dir)
  [ -x "$venv/bin/dbt" ] &&
    "$venv/bin/python" - "$DBT_CORE_VERSION" "$DBT_DUCKDB_VERSION" "$OPENLINEAGE_DBT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import dbt.adapters.duckdb, duckdb  # noqa: F401
ok = version("dbt-core") == sys.argv[1] and version("dbt-duckdb") == sys.argv[2]
ok = ok and version("openlineage-dbt") == sys.argv[3]
sys.exit(0 if ok else 1)
PY
}

install() {
  local venv; venv=$(dbt_venv_dir)
  if installed; then
    echo "$venv"
    return
  fi
  pip_venv "$venv" dbt "${PINS[@]}"
  echo "$venv"
}

case "${1:-}" in
  install) install ;;
  bin) install >/dev/null; echo "$(dbt_venv_dir)/bin/dbt" ;;
  *) sed -n '2,10p' "$0" >&2; exit 64 ;;
esac
