#!/usr/bin/env bash
# A headless browser for the live dashboard check (tests/dashboard/check_dashboard.py).
#
#   tests/rig/browser.sh install      install Debian's chromium (as root; otherwise prints the
#                                     command to run) and playwright into the tools venv
#   tests/rig/browser.sh bin          print the tools venv's python, which has playwright
#                                     (installs first if needed)
#
# Playwright cannot download its own browser builds here, so the check launches the system
# /usr/bin/chromium through playwright's executable_path. Quiet when everything is present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

PLAYWRIGHT_VERSION=1.65.3
CHROMIUM=/usr/bin/chromium

playwright_installed() {
  local venv=$1
  "$venv/bin/python" - "$PLAYWRIGHT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import playwright.sync_api  # noqa: F401
sys.exit(0 if version("playwright") == sys.argv[1] else 1)
PY
}

install() {
  if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ]; then
      local started=$SECONDS
      echo "installing chromium (apt)" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
      echo "chromium installed in $((SECONDS - started)) s" >&2
    else
      echo "chromium is missing: run 'sudo apt-get install -y chromium'" >&2
      exit 1
    fi
  fi
  local venv; venv=$(tools_venv)
  if ! playwright_installed "$venv"; then
    local started=$SECONDS
    echo "installing playwright==$PLAYWRIGHT_VERSION into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION" >&2
    echo "playwright installed in $((SECONDS - started)) s" >&2
  fi
}

case "${1:-}" in
  install) install ;;
  bin) install; echo "$(tools_venv)/bin/python" ;;
  *) sed -n '2,10p' "$0" >&2; exit 64 ;;
esac
