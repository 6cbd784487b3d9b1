-- In streaming mode a table's watermark makes its source emit watermarks (bounded
-- out-of-orderness); EXPLAIN shows them. Rows flow as in batch mode.
SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '2';

CREATE TABLE Bids (
  auction BIGINT,
  bidder BIGINT,
  Price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids_mixed_case.jsonl', 'format' = 'json');

EXPLAIN SELECT auction, Price, dateTime FROM Bids WHERE Price > 300;

SELECT auction, Price, dateTime FROM Bids WHERE Price > 300;
