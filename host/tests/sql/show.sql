-- SHOW TABLES and SHOW FUNCTIONS list what the script declared.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');
CREATE TABLE out (x BIGINT) WITH ('connector' = 'print');
CREATE FUNCTION to_usd AS 'to_usd' LANGUAGE WASM USING JAR '${MODULES}/currency.wasm';
CREATE FUNCTION url_segments AS 'url_segments' LANGUAGE WASM USING JAR '${MODULES}/urls.wasm';
SHOW TABLES;
SHOW FUNCTIONS;
SELECT 1 + 1 AS two, 'weir' AS name;
