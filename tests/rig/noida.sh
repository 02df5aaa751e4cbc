#!/usr/bin/env bash
# noida-db, a Kafka-protocol broker with working transactions (read_committed) and compaction,
# for the small exactly-once tests (see ../shared/INFRA.md: single member, range assignor).
#
#   tests/rig/noida.sh install     install noida-db into the tools venv
#   tests/rig/noida.sh bin         print the noida-db binary path (installs first if needed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

install() {
  local venv; venv=$(tools_venv)
  if [ ! -x "$venv/bin/noida-db" ]; then
    echo "installing noida-db==0.2.3 into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'noida-db==0.2.3' >&2
  fi
}

case "${1:-}" in
  install) install ;;
  bin) install; echo "$(tools_venv)/bin/noida-db" ;;
  *) sed -n '2,7p' "$0" >&2; exit 64 ;;
esac
