#!/usr/bin/env bash
# The OpenLineage Python client in its own venv: its model, generated from the OpenLineage spec,
# checks the run events happystreams emits (tests/happytimes/lineage_check.py).
#
#   tests/rig/openlineage.sh install   create $HAPPYSTREAMS_TOOLS/openlineage-venv (no-op when
#                                      present); prints the venv path
#   tests/rig/openlineage.sh bin       print the venv's python (installs first if needed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

OPENLINEAGE_VERSION=1.54.0

venv_dir() { echo "$HAPPYSTREAMS_TOOLS/openlineage-venv"; }

installed() {
  local venv; venv=$(venv_dir)
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import sys; from importlib.metadata import version; sys.exit(version('openlineage-python') != '$OPENLINEAGE_VERSION')" 2>/dev/null
}

install() {
  local venv; venv=$(venv_dir)
  if installed; then
    echo "$venv"
    return
  fi
  pip_venv "$venv" openlineage-python "openlineage-python==$OPENLINEAGE_VERSION"
  echo "$venv"
}

case "${1:-}" in
  install) install ;;
  bin) install >/dev/null; echo "$(venv_dir)/bin/python" ;;
  *) sed -n '2,7p' "$0" >&2; exit 64 ;;
esac
