-- Nexmark bids from the built-in generator (deterministic for a seed), through a Rust Wasm UDF.
-- Run: weir run examples/nexmark.sql --parallelism 2 --stats

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel STRING,
  url STRING,
  dateTime TIMESTAMP(3),
  extra STRING
) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '1000000', 'seed' = '7');

CREATE FUNCTION count_char AS 'count_char' LANGUAGE WASM USING JAR 'modules/currency.wasm';

-- Nexmark q14's shape: a Wasm function on every row, a filter, a CASE on the hour.
SELECT
  CASE WHEN EXTRACT(HOUR FROM dateTime) BETWEEN 8 AND 18 THEN 'dayTime' ELSE 'otherTime' END AS bid_time,
  COUNT(*) AS bids,
  SUM(count_char(extra, 'c')) AS c_in_extra,
  MAX(price) AS top_price
FROM bid
WHERE 0.908 * price > 1000000
GROUP BY CASE WHEN EXTRACT(HOUR FROM dateTime) BETWEEN 8 AND 18 THEN 'dayTime' ELSE 'otherTime' END
ORDER BY bid_time;
