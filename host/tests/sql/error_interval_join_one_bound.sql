-- A join that bounds the event times on one side only, over an input that never ends (a
-- directory watched for new files), would keep every row forever: refused.
SET 'execution.runtime-mode' = 'streaming';

CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json',
      'source.monitor-interval' = '1 s');

SELECT a.auction, b.price FROM bid a JOIN bid b
ON a.auction = b.auction AND a.dateTime > b.dateTime;
