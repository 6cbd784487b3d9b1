-- A watermark must trail the event time (bounded out-of-orderness), not run ahead of it.
CREATE TABLE Bids (
  auction BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime + INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids_mixed_case.jsonl', 'format' = 'json');
