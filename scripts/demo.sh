#!/usr/bin/env bash
# Sets up, builds the example functions as Wasm components, and runs them over a CSV file with
# the `weir` command: embedded, no server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== building the weir command" >&2
cargo build -p weir
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
weir="$target_dir/debug/weir"
out="$target_dir/demo"
mkdir -p "$out"

for crate in currency urls stats; do
  echo "== weir build udfs/rust/$crate" >&2
  "$weir" build "udfs/rust/$crate" -o "$out/$crate.wasm"
done

echo "== weir inspect currency.wasm" >&2
"$weir" inspect "$out/currency.wasm"
echo "== to_usd(price_cents) over udfs/data/orders.csv" >&2
"$weir" call "$out/currency.wasm" to_usd --input udfs/data/orders.csv --args price_cents
echo "== url_domain(url)" >&2
"$weir" call "$out/urls.wasm" url_domain --input udfs/data/orders.csv --args url
echo "== url_segments(url): a table function, one row per path segment" >&2
"$weir" call "$out/urls.wasm" url_segments --input udfs/data/orders.csv --args url
echo "== weighted_avg(price, quantity) GROUP BY country: an aggregate, states held by the host" >&2
"$weir" call "$out/stats.wasm" weighted_avg --input udfs/data/orders.csv --args price,quantity --group-by country

echo "== weir build udfs/python/currency.py: the same functions in Python (componentize-py)" >&2
WEIR_PYTHON=$PWD/.venv/bin/python "$weir" build udfs/python/currency.py -o "$out/currency_py.wasm"
"$weir" inspect "$out/currency_py.wasm"
echo "== to_usd(price_cents), the Python build: the same answers" >&2
"$weir" call "$out/currency_py.wasm" to_usd --input udfs/data/orders.csv --args price_cents
