#!/usr/bin/env bash
# Every check CI runs: formatting, lints, the guest components, and all tests in one cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check (host workspace and guests)" >&2
cargo fmt --all -- --check
(cd udfs && cargo fmt --all -- --check)

echo "== Python SDK: ruff, pytest (no Wasm)" >&2
ruff_config=(--config sdk-python/pyproject.toml)
.venv/bin/ruff check "${ruff_config[@]}" sdk-python udfs/python
.venv/bin/ruff format --check "${ruff_config[@]}" sdk-python udfs/python
log=$(mktemp)
trap 'rm -f "$log"' EXIT
.venv/bin/python -m pytest -q -p no:cacheprovider sdk-python/tests udfs/python 2>&1 | tee "$log"
# The Rust tests build the Python examples with this interpreter.
export WEIR_PYTHON=$PWD/.venv/bin/python

echo "== building the guest components (udfs/, wasm32-wasip2)" >&2
guest_target=${WEIR_GUEST_TARGET_DIR:-$PWD/udfs/target}
case $guest_target in /*) ;; *) guest_target=$PWD/$guest_target ;; esac
export WEIR_GUEST_TARGET_DIR=$guest_target  # the host tests load components from here
(cd udfs && cargo clippy --release --target-dir "$guest_target" -- -D warnings)
(cd udfs && cargo build --release --target-dir "$guest_target")

echo "== clippy (host workspace), linting as it builds every target for the tests" >&2
# `cargo clippy` checks every dependency in a build of its own (metadata only), which on a
# fresh machine costs as much again as building them. Run as the workspace's compiler wrapper
# (what `cargo clippy` does, with CLIPPY_ARGS in its format) in the test build, clippy lints our
# crates while dependencies are built once for both. Its artifacts are kept apart from the plain
# ones, so the tests below (which run cargo themselves: guests, trybuild) run without it.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" \
  CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
  cargo test --workspace --all-targets --no-run

echo "== starting the test servers" >&2
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
trap 'stop_servers; rm -f "$log"' EXIT

echo "== cargo test" >&2
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (pytest, then cargo's result per test binary, the last of
# which is often an empty doc-test block).
read -r passed failed < <(awk '
  /^test result:/ {p += $4; f += $6}
  !/^test result:/ && / passed.* in [0-9.]+s/ {for (i = 2; i <= NF; i++) {if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1)}}
  END {print p + 0, f + 0}' "$log")
echo "tests: $passed passed, $failed failed"
exit "$status"
