#!/usr/bin/env bash
# Sets up, builds the example functions as Wasm components, calls them over a CSV file, and runs
# the SQL examples with `weir run`: embedded, no server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== building the weir command" >&2
cargo build -p weir
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
weir="$target_dir/debug/weir"
out=examples/modules
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

echo "== weir run examples/orders.sql: SQL over the CSV, calling the Rust and Python functions" >&2
rm -rf examples/out
"$weir" run examples/orders.sql --parallelism 2 --stats
echo "== the JSON-lines part files the INSERT wrote" >&2
cat examples/out/usd_orders/*.json
echo "== weir run examples/nexmark.sql: one million generated Nexmark events through a Wasm UDF" >&2
"$weir" run examples/nexmark.sql --parallelism 2 --stats
