-- GROUP BY with a Wasm aggregate (the python build) beside the built-in aggregates.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '${MODULES}/stats_py.wasm';

SELECT
  country,
  COUNT(*) AS orders,
  COUNT(DISTINCT quantity) AS quantities,
  SUM(quantity) AS items,
  MIN(price) AS cheapest,
  MAX(price) AS dearest,
  AVG(price) AS mean_price,
  weighted_avg(price, quantity) AS weighted_price
FROM orders
GROUP BY country
ORDER BY country;
