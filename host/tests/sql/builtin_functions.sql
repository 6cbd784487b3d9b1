-- DataFusion's built-in scalar functions, as Flink users write them.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

SELECT
  order_id,
  UPPER(country) || '-' || LOWER(country) AS codes,
  SUBSTRING(url FROM 1 FOR 5) AS scheme,
  CHAR_LENGTH(url) AS url_length,
  CAST(price_cents AS DOUBLE) / 100 AS price_from_cents,
  COALESCE(`comment`, '(none)') AS note,
  CASE WHEN quantity >= 5 THEN 'bulk' ELSE 'single' END AS kind,
  ROUND(price * 1.19, 2) AS gross
FROM orders
ORDER BY order_id;
