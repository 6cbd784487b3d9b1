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
SELECT order_id,
       to_usd(country) FROM orders;
