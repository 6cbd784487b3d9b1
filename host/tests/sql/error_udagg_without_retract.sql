-- A Wasm aggregate without retract cannot sit over an updating input.
SET 'execution.runtime-mode' = 'streaming';

CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE FUNCTION approx_distinct AS 'approx_distinct' LANGUAGE WASM USING JAR '${MODULES}/stats.wasm';

SELECT approx_distinct(CAST(bids AS STRING)) FROM (SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction);
