#!/usr/bin/env bash
# The whole test suite: build prerequisites, test services (Tansu broker), then every test in
# the one integration-test binary plus the unit tests. Extra arguments go to `cargo test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
scripts/install-build-deps.sh
# The real-broker tests start their own Tansu broker from this binary (tests/it/rig.rs).
HAPPYSTREAMS_TANSU_BIN=$(tests/rig/tansu.sh bin)
export HAPPYSTREAMS_TANSU_BIN
cargo test --locked "$@"
