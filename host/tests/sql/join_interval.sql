-- An interval join (Flink's form): the join condition bounds the difference of the two sides'
-- event times, so rows leave state once the watermark passes the bounds; a left interval
-- join's unmatched rows come out then, padded, and its output only appends.
SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '2';

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

EXPLAIN SELECT a.auction, a.price AS price, b.price AS next_price
FROM bid a LEFT JOIN bid b ON a.auction = b.auction
  AND b.dateTime > a.dateTime AND b.dateTime <= a.dateTime + INTERVAL '2' SECOND;

-- (Its rows, in batch and streaming mode, are checked by the equivalence test: here their order
-- would depend on which input comes first.)
