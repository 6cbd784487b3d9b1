CREATE TABLE bad (order_id BIGINT, country STRING, quantity INT)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bad_orders.csv', 'format' = 'csv', 'csv.header' = 'true');
SELECT * FROM bad;
