-- count_char fails when asked to count more than one character: the job fails with the function's message.
CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');
CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR '${MODULES}/currency.wasm';
SELECT count_char(url, 'ab') FROM orders;
