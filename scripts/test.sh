#!/usr/bin/env bash
# Every check CI runs: formatting, lints, the guest components, and all tests in one cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check (host workspace and guests)" >&2
cargo fmt --all -- --check
(cd udfs && cargo fmt --all -- --check)

echo "== building the guest components (udfs/, wasm32-wasip2)" >&2
guest_target=${WEIR_GUEST_TARGET_DIR:-$PWD/udfs/target}
case $guest_target in /*) ;; *) guest_target=$PWD/$guest_target ;; esac
export WEIR_GUEST_TARGET_DIR=$guest_target  # the host tests load components from here
(cd udfs && cargo clippy --release --target-dir "$guest_target" -- -D warnings)
(cd udfs && cargo build --release --target-dir "$guest_target")

echo "== cargo clippy (host workspace)" >&2
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --workspace
