-- Aggregates over an updating input take rows back: a GROUP BY over a GROUP BY's changelog
-- retracts each old count as it changes, and a group whose rows are all taken back is deleted
-- (-D). COUNT, SUM, AVG and Wasm aggregates with retract can; MIN and MAX cannot (yet).
SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '1';
SET 'pipeline.batch-size' = '10';

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '${MODULES}/stats.wasm';

-- How many auctions have each number of bids.
SELECT bids, COUNT(*) AS auctions FROM (
  SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction
) GROUP BY bids;

SELECT COUNT(*) AS bidders, SUM(spent) AS spent, weighted_avg(spent, bids) AS wavg FROM (
  SELECT bidder, COUNT(*) AS bids, SUM(price) AS spent FROM bid GROUP BY bidder
);

SELECT MAX(bids) FROM (SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction);
