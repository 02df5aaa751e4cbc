# Sourced by the project's scripts: one persistent cargo target directory outside the clone, so
# every clone (and every CI run) on this machine reuses the compiled dependencies (the bundled
# RocksDB alone is ~43 CPU-minutes per profile).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/happystreams/target}
