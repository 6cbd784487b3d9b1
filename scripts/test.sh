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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: cargo prints a result per test binary, the last of which
# is often an empty doc-test block.
read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "$log")
echo "tests: $passed passed, $failed failed"
exit "$status"
