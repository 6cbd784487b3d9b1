-- In streaming mode a GROUP BY without a window updates its result as rows come: it emits a
-- changelog (+I a new row, -U/+U the row before and after an update), shown in an op column.
-- Applied in order, it ends at the batch result.
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

EXPLAIN SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction;

SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction;

-- A HAVING filters each change on its own.
SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction HAVING COUNT(*) > 8;

-- The filesystem sink writes a changelog when told to, op first.
CREATE TABLE changes (auction BIGINT, bids BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '${OUT}/changes', 'format' = 'csv',
  'sink.changelog-mode' = 'all');
INSERT INTO changes SELECT auction, COUNT(*) FROM bid WHERE auction = 1003 GROUP BY auction;
CREATE TABLE written (op STRING, auction BIGINT, bids BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '${OUT}/changes', 'format' = 'csv');
SELECT * FROM written;

-- Or, with a primary key, as an upsert log: each row inserts or replaces its key's row (no -U).
CREATE TABLE upserts (auction BIGINT, bids BIGINT, PRIMARY KEY (auction) NOT ENFORCED) WITH (
  'connector' = 'filesystem', 'path' = '${OUT}/upserts', 'format' = 'csv',
  'sink.changelog-mode' = 'upsert');
INSERT INTO upserts SELECT auction, COUNT(*) FROM bid WHERE auction = 1003 GROUP BY auction;
CREATE TABLE upserted (op STRING, auction BIGINT, bids BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '${OUT}/upserts', 'format' = 'csv');
SELECT * FROM upserted;

-- Otherwise it refuses an updating result.
CREATE TABLE totals (auction BIGINT, bids BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '${OUT}/totals', 'format' = 'csv');
INSERT INTO totals SELECT auction, COUNT(*) FROM bid GROUP BY auction;
