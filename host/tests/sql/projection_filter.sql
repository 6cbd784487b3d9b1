-- Projections, arithmetic and a filter over a CSV file.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

SELECT order_id, country, price * quantity AS total, quantity + 1 AS more
FROM orders
WHERE quantity > 1 AND country <> 'FR'
ORDER BY order_id;
