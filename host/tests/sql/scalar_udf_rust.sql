-- Scalar Wasm functions (the rust build) in projections, filters and nested expressions.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE FUNCTION to_usd AS 'to_usd' LANGUAGE WASM USING JAR '${MODULES}/currency.wasm';
CREATE TEMPORARY FUNCTION count_char AS 'count_char' LANGUAGE WASM USING '${MODULES}/currency.wasm';
CREATE FUNCTION domain AS 'url_domain' LANGUAGE WASM USING JAR '${MODULES}/urls.wasm';

SELECT order_id, to_usd(price_cents) AS usd, UPPER(domain(url)) AS host, count_char(url, '/') AS slashes
FROM orders
WHERE to_usd(price_cents) > 5 OR domain(url) IS NULL
ORDER BY order_id;
