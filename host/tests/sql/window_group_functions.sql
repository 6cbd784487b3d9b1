-- Flink's group window functions (the older form, as in Nexmark q11): GROUP BY TUMBLE(...),
-- HOP(...) or SESSION(...) with TUMBLE_START, HOP_END, SESSION_START and the like.
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR '${MODULES}/stats.wasm';

-- Nexmark q11: bids per bidder in sessions that close after 3 idle seconds (sessions merge,
-- and so do the Wasm aggregate's states).
SELECT B.bidder, COUNT(*) AS bid_count,
       SESSION_START(B.dateTime, INTERVAL '3' SECOND) AS starttime,
       SESSION_END(B.dateTime, INTERVAL '3' SECOND) AS endtime,
       weighted_avg(B.price, B.auction) AS wavg
FROM bid B
GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '3' SECOND);

SELECT TUMBLE_START(dateTime, INTERVAL '20' SECOND) AS wstart,
       TUMBLE_ROWTIME(dateTime, INTERVAL '20' SECOND) AS wtime, COUNT(*) AS bids
FROM bid GROUP BY TUMBLE(dateTime, INTERVAL '20' SECOND);

SELECT auction, HOP_END(dateTime, INTERVAL '10' SECOND, INTERVAL '20' SECOND) AS wend,
       SUM(price) AS total
FROM bid GROUP BY HOP(dateTime, INTERVAL '10' SECOND, INTERVAL '20' SECOND), auction
HAVING SUM(price) > 5000;

-- The table-function form of a session, grouped by its keys.
SELECT auction, window_start, window_end, COUNT(*) AS bids
FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '4' SECOND))
GROUP BY auction, window_start, window_end;

-- A session needs its GROUP BY.
SELECT * FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '4' SECOND));
