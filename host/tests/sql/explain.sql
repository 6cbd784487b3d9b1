-- EXPLAIN prints the dataflow graph: operators, parallelism, edges and their partitioning.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE TABLE sink (country STRING, orders BIGINT) WITH ('connector' = 'blackhole');

SET 'parallelism.default' = '2';

EXPLAIN INSERT INTO sink
SELECT country, COUNT(*) FROM orders WHERE price > 2 GROUP BY country;

EXPLAIN SELECT order_id FROM orders ORDER BY order_id LIMIT 3;
