#!/usr/bin/env bash
# Prometheus and promtool from apt (Debian's 2.42), for the monitoring tests (tests/it/deploy.rs):
# promtool checks and unit-tests deploy/prometheus/, and a real Prometheus scrapes real instances.
#
#   tests/rig/prometheus.sh install   apt-get install prometheus (no-op when present)
#   tests/rig/prometheus.sh bin       print the prometheus binary path (installs first if needed);
#                                     promtool is beside it
# The package's service is not started (no systemd here): each test runs its own Prometheus.
set -euo pipefail

install() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "Prometheus is missing: apt-get install -y --no-install-recommends prometheus (as root)" >&2
    exit 1
  fi
  echo "installing Prometheus from apt" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; }
}

case "${1:-}" in
  install) install ;;
  bin) install; command -v prometheus ;;
  *) echo "usage: $0 install|bin" >&2; exit 2 ;;
esac
