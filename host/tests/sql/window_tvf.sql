-- Flink's window table functions in batch mode: TUMBLE, HOP and CUMULATE add window_start,
-- window_end and window_time; GROUP BY window_start, window_end is a window aggregation.
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '${MODULES}/stats.wasm';

-- Per auction and 10-second window, with a Wasm aggregate beside the built-ins.
SELECT auction, window_start, window_end, COUNT(*) AS bids, SUM(price) AS total,
       MIN(price) AS low, MAX(price) AS high, weighted_avg(price, bidder) AS wavg
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;

-- Hopping windows share 5-second slices: every bid is accumulated once.
SELECT window_start, window_end, window_time, COUNT(*) AS bids, MAX(price) AS top,
       weighted_avg(price, bidder) AS wavg
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '15' SECOND))
GROUP BY window_start, window_end, window_time;

-- Cumulating windows: every 5 seconds, the total so far in the 20-second window.
SELECT window_start, window_end, COUNT(DISTINCT auction) AS auctions, SUM(price) AS total
FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '20' SECOND))
WHERE price > 100
GROUP BY window_start, window_end;

-- A filter that reads window_end: each bid comes once per window, and the windows still add up.
SELECT window_start, window_end, COUNT(*) AS bids
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND, INTERVAL '20' SECOND))
WHERE window_end > TIMESTAMP '2026-01-01 10:00:30'
GROUP BY window_start, window_end;

-- The table function alone: one row per bid and window.
SELECT auction, price, dateTime, window_start, window_end
FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
WHERE auction = 1003
ORDER BY dateTime, window_end;

-- An offset moves the windows; a subquery can be the data.
SELECT window_start, window_end, COUNT(*) AS bids
FROM TABLE(TUMBLE(TABLE (SELECT * FROM bid WHERE bidder < 5), DESCRIPTOR(dateTime), INTERVAL '20' SECOND, INTERVAL '5' SECOND))
GROUP BY window_start, window_end;

SET 'parallelism.default' = '2';
EXPLAIN SELECT auction, window_start, window_end, COUNT(*) AS bids
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '15' SECOND))
GROUP BY auction, window_start, window_end;
