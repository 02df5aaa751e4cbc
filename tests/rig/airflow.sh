#!/usr/bin/env bash
# Apache Airflow in its own venv, for the HappyTimes DAG tests (see airflow/README.md).
#
#   tests/rig/airflow.sh install      create $HAPPYSTREAMS_TOOLS/airflow-venv with Airflow, the SFTP
#                                     provider and pytest (no-op when present); prints the venv path
#   tests/rig/airflow.sh venv         print the venv path (installs first if needed)
#
# Airflow's documented install uses its constraints file. When that file is reachable
# (AIRFLOW_CONSTRAINTS = a local path or URL; default: the official one for this Airflow and
# Python version) it is used; otherwise the packages below are pinned directly and pip
# resolves the rest. Either way the resolved set is written to the venv's versions.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

AIRFLOW_VERSION=3.3.2
# Used when the constraints file is unreachable: versions that resolved together with
# Airflow $AIRFLOW_VERSION on Python 3.11 from PyPI alone.
FALLBACK_PINS=(
  "apache-airflow==$AIRFLOW_VERSION"
  "apache-airflow-providers-sftp==7.0.0"
  "pyarrow==26.0.1"
  "pytest==9.2.0"
)

airflow_venv_dir() { echo "$HAPPYSTREAMS_TOOLS/airflow-venv"; }

installed() {
  local venv; venv=$(airflow_venv_dir)
  [ -x "$venv/bin/airflow" ] && [ -x "$venv/bin/pytest" ] &&
    "$venv/bin/python" - "$AIRFLOW_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import airflow.providers.sftp, pyarrow  # noqa: F401
sys.exit(0 if version("apache-airflow") == sys.argv[1] else 1)
PY
}

install() {
  local venv; venv=$(airflow_venv_dir)
  if installed; then
    echo "$venv"
    return
  fi
  local started=$SECONDS
  mkdir -p "$HAPPYSTREAMS_TOOLS"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  local py; py=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  local constraints=${AIRFLOW_CONSTRAINTS:-https://raw.githubusercontent.com/apache/airflow/constraints-$AIRFLOW_VERSION/constraints-$py.txt}
  local cfile="$venv/constraints.txt"
  if [ -f "$constraints" ]; then
    cp "$constraints" "$cfile"
  elif ! "$venv/bin/python" - "$constraints" "$cfile" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r, open(sys.argv[2], "wb") as f:
    f.write(r.read())
PY
  then
    rm -f "$cfile"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  if [ -s "$cfile" ]; then
    echo "installing Airflow $AIRFLOW_VERSION into $venv with constraints $constraints" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --constraint "$cfile" \
      "apache-airflow==$AIRFLOW_VERSION" apache-airflow-providers-sftp pyarrow pytest >&2
  else
    echo "installing Airflow $AIRFLOW_VERSION into $venv (constraints file unreachable: pinned set)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${FALLBACK_PINS[@]}" >&2
  fi
  "$venv/bin/pip" freeze --disable-pip-version-check >"$venv/versions.txt"
  echo "Airflow installed in $((SECONDS - started)) s; versions in $venv/versions.txt" >&2
  echo "$venv"
}

case "${1:-}" in
  install) install ;;
  venv) install >/dev/null; airflow_venv_dir ;;
  *) sed -n '2,11p' "$0" >&2; exit 64 ;;
esac
