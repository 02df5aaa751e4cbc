#!/usr/bin/env bash
# Installs what building happystreams needs beyond Rust: libclang (bindgen for RocksDB),
# pkg-config and OpenSSL headers (librdkafka with TLS). Idempotent; quiet when all is present.
set -euo pipefail
packages=(libclang-dev pkg-config libssl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing build packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing build packages: ${missing[*]}" >&2
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >&2
