-- DESCRIPTOR must name a TIMESTAMP column.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

SELECT window_start, window_end, COUNT(*)
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(price), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
