CREATE TABLE bad (order_id BIGINT, country STRING, quantity INT)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bad_orders.jsonl', 'format' = 'json');
SELECT * FROM bad;
