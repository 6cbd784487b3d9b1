-- Flink's DATE_FORMAT with Java's pattern letters (Nexmark q15 and q16 use it).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

SELECT dateTime, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`,
       DATE_FORMAT(dateTime, 'HH:mm') AS `minute`,
       DATE_FORMAT(dateTime, 'yyyy-MM-dd''T''HH:mm:ss.SSS') AS iso
FROM bid ORDER BY dateTime LIMIT 3;

SELECT DATE_FORMAT(dateTime, 'EEE, d MMM') FROM bid;
