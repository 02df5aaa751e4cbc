#!/usr/bin/env bash
# The long chaos soak (tests/it/chaos.rs): three `run` instances on Tansu, one killed with
# SIGKILL every 10 s and restarted, a fourth joining, over CLICKS clicks (default 1,000,000) and
# SECONDS_OF_CHAOS seconds (default 300); prints the figures docs/RELIABILITY.md records.
#   tests/chaos/soak.sh [CLICKS] [SECONDS_OF_CHAOS]
# CI runs the short form with the rest of the suite (tests/run.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/env.sh
HAPPYSTREAMS_TANSU_BIN=$(tests/rig/tansu.sh bin)
export HAPPYSTREAMS_TANSU_BIN
export HAPPYSTREAMS_SOAK_CLICKS=${1:-1000000} HAPPYSTREAMS_SOAK_SECONDS=${2:-300}
exec cargo test --locked --test it chaos:: -- --nocapture
