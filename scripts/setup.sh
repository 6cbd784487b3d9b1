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

# RocksDB's bindings are generated with bindgen, which needs libclang.
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: building RocksDB needs libclang; run as root, or: apt-get install libclang-dev" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi

# The server's TLS test makes a throwaway certificate with the openssl command.
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: the tests need the openssl command; run as root, or: apt-get install openssl" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# Python UDFs: a virtualenv the project owns (.venv), with the SDK (editable), componentize-py,
# pytest and ruff at the versions pinned in sdk-python/pyproject.toml. Reinstalled only when
# those pins change.
venv=.venv
cd "$(dirname "$0")/.."
if ! [ -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian splits venv (and ensurepip) out of python3.
    rm -rf "$venv"
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup: python3 cannot create a virtualenv; run as root, or: apt-get install python3-venv" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python3-venv" >/dev/null
    python3 -m venv "$venv"
  fi
fi
stamp=$(sha256sum sdk-python/pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$venv/.weir-installed" 2>/dev/null)" != "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "sdk-python[dev]"
  echo "$stamp" > "$venv/.weir-installed"
fi
