-- Top-N as Flink writes it: ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) kept at most N by
-- an outer WHERE; rn = 1 is dedup (keep the first or the last row per key).
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

-- Nexmark q19's form: the top bids of each auction.
SELECT auction, bidder, price, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, dateTime) AS rn FROM bid
) WHERE rn <= 2;

-- Nexmark q18's form: each bidder's last bid.
SELECT bidder, auction, price, dateTime FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder ORDER BY dateTime DESC) AS rn FROM bid
) WHERE rn = 1;

-- Global: the three highest bids.
SELECT * FROM (
  SELECT auction, price, dateTime, ROW_NUMBER() OVER (ORDER BY price DESC, dateTime) AS rn FROM bid
) WHERE rn < 4;

-- In streaming mode the top rows update: a changelog, rank by rank.
SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '1';
SET 'pipeline.batch-size' = '10';
EXPLAIN SELECT * FROM (
  SELECT auction, price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, dateTime) AS rn
  FROM bid WHERE auction = 1003
) WHERE rn <= 2;
SELECT * FROM (
  SELECT auction, price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, dateTime) AS rn
  FROM bid WHERE auction = 1003
) WHERE rn <= 2;

-- ROW_NUMBER runs only as Top-N.
SELECT auction, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bid;
