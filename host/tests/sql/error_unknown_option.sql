CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = 'x.csv', 'format' = 'csv', 'csv.delimiter' = ';');
SELECT * FROM t;
