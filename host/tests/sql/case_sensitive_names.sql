-- Table and column names keep their case, as in Flink: column `dateTime` reads json key
-- "dateTime", and `datetime` is another (unknown) name. Function names are case-insensitive.
CREATE TABLE Bids (
  auction BIGINT,
  bidder BIGINT,
  Price BIGINT,
  dateTime TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids_mixed_case.jsonl', 'format' = 'json');

SELECT auction, Price, dateTime, Upper(CAST(bidder AS STRING)) AS b FROM Bids ORDER BY dateTime;

SELECT auction, datetime FROM Bids;
