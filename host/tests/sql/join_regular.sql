-- Regular joins on equality, inner and left: both inputs' rows stay in state, keyed by the join
-- key. In streaming mode a left join's row without a match comes out padded with nulls and is
-- taken back (-D) when its first match arrives. (A join's rows come in the order its two inputs
-- happen to arrive: ORDER BY fixes it here.)
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE orders (
  order_id BIGINT,
  country STRING,
  url STRING,
  price_cents BIGINT,
  price DOUBLE,
  quantity INT,
  `comment` STRING
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.csv', 'format' = 'csv', 'csv.header' = 'true');

SELECT b.auction, b.bidder, b.price, o.country
FROM bid b JOIN orders o ON b.bidder = o.order_id
WHERE b.price > 1000
ORDER BY b.dateTime;

-- An inner join of appending inputs appends: a GROUP BY may follow.
SELECT o.country, COUNT(*) AS bids, MAX(b.price) AS top
FROM bid b JOIN orders o ON b.bidder = o.order_id
GROUP BY o.country;

-- A left join keeps orders without a big bid, padded.
SELECT o.order_id, o.country, b.auction, b.price
FROM orders o LEFT JOIN bid b ON b.bidder = o.order_id AND b.price >= 4200
ORDER BY o.order_id;

SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '1';
-- (Which padded rows are taken back depends on which input's rows come first; the
-- equivalence test checks the applied changelog over many runs.)
EXPLAIN SELECT o.order_id, b.auction, b.price
FROM orders o LEFT JOIN bid b ON b.bidder = o.order_id AND b.price >= 4200;

-- 'table.exec.state.ttl' bounds it: a row leaves state that long after it came.
SET 'table.exec.state.ttl' = '1 h';
EXPLAIN SELECT o.order_id, b.auction FROM orders o JOIN bid b ON b.bidder = o.order_id;

SELECT * FROM bid b FULL JOIN orders o ON b.bidder = o.order_id;
