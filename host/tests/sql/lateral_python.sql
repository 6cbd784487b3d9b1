-- A table function (the python build) in each of Flink's three LATERAL forms.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

CREATE FUNCTION url_segments AS 'url_segments' LANGUAGE WASM USING JAR '${MODULES}/urls_py.wasm';

SELECT order_id, s.position, s.segment
FROM orders, LATERAL TABLE(url_segments(url)) AS s(position, segment)
WHERE order_id <= 3
ORDER BY order_id, s.position;

SELECT o.order_id, seg
FROM orders AS o CROSS JOIN LATERAL TABLE(url_segments(o.url)) AS t(pos, seg)
WHERE pos = 1
ORDER BY o.order_id;

SELECT order_id, pos, seg
FROM orders LEFT JOIN LATERAL TABLE(url_segments(url)) AS t(pos, seg) ON TRUE
WHERE order_id IN (5, 7)
ORDER BY order_id, pos;
