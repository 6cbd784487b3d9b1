-- INSERT INTO a parquet file table, then read it back.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE TABLE totals (country STRING, items BIGINT, revenue DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/totals', 'format' = 'parquet');

INSERT INTO totals
SELECT country, SUM(quantity), SUM(price * quantity) FROM orders GROUP BY country;

SELECT * FROM totals ORDER BY country;
