CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '${DATA}/no_such.csv', 'format' = 'csv');
SELECT * FROM t;
