CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka-ish');
SELECT * FROM t;
