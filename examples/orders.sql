-- Orders from a CSV file through Wasm functions written in Rust and Python.
-- Run: weir run examples/orders.sql   (scripts/demo.sh builds the modules into examples/modules/)
-- Relative paths are relative to this script.

CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '../udfs/data/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE FUNCTION to_usd AS 'to_usd' LANGUAGE WASM USING JAR 'modules/currency.wasm';
CREATE FUNCTION url_domain AS 'url_domain' LANGUAGE WASM USING JAR 'modules/urls.wasm';
CREATE FUNCTION url_segments AS 'url_segments' LANGUAGE WASM USING JAR 'modules/urls.wasm';
CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR 'modules/stats.wasm';
-- The Python build of the currency functions, under another name.
CREATE FUNCTION to_usd_py AS 'to_usd' LANGUAGE WASM USING JAR 'modules/currency_py.wasm';

-- A scalar function from Rust and its Python twin, side by side.
SELECT order_id, url_domain(url) AS host, to_usd(price_cents) AS usd, to_usd_py(price_cents) AS usd_py
FROM orders
ORDER BY order_id;

-- A table function: one row per path segment.
SELECT order_id, seg.position, seg.segment
FROM orders, LATERAL TABLE(url_segments(url)) AS seg(position, segment)
WHERE order_id <= 3
ORDER BY order_id, seg.position;

-- An aggregate function whose states the host owns, beside the built-ins.
SELECT country, COUNT(*) AS orders, SUM(quantity) AS items, weighted_avg(price, quantity) AS avg_price
FROM orders
GROUP BY country
ORDER BY country;

-- Results into a JSON-lines file (written atomically: part files appear when complete).
CREATE TABLE usd_orders (order_id BIGINT, host STRING, usd DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'out/usd_orders', 'format' = 'json');

INSERT INTO usd_orders
SELECT order_id, url_domain(url), to_usd(price_cents) FROM orders WHERE price_cents IS NOT NULL;
