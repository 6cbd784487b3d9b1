-- With ignore-parse-errors, bad rows are skipped (and counted in --stats).
CREATE TABLE bad_csv (order_id BIGINT, country STRING, quantity INT)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bad_orders.csv', 'format' = 'csv',
      'csv.header' = 'true', 'csv.ignore-parse-errors' = 'true');
CREATE TABLE bad_json (order_id BIGINT, country STRING, quantity INT)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bad_orders.jsonl', 'format' = 'json',
      'json.ignore-parse-errors' = 'true');
SELECT * FROM bad_csv ORDER BY order_id;
SELECT * FROM bad_json ORDER BY order_id;
