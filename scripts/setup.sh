#!/usr/bin/env bash
# Installs what building and testing Weir needs, on a Debian machine with rustup and Python 3.
# Idempotent: run it as often as you like.
set -euo pipefail

if ! command -v rustup >/dev/null; then
  echo "setup: rustup is required (https://rustup.rs); it is the only prerequisite besides Python 3" >&2
  exit 1
fi
# Guests are components for WASI preview 2.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
