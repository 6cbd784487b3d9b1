-- SELECT DISTINCT is a GROUP BY without aggregates: each group's state is empty, but the
-- group is there (a regression test: such groups once vanished).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

SELECT DISTINCT auction FROM bid;

SELECT DISTINCT auction, bidder FROM bid WHERE price >= 3000;

SET 'execution.runtime-mode' = 'streaming';
SET 'parallelism.default' = '1';
SELECT DISTINCT auction FROM bid;
