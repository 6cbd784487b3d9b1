-- Aggregates over input that a filter empties: a global aggregate still gives its one row
-- (COUNT 0, SUM null), a grouped one gives none.
SELECT COUNT(*) AS n, SUM(x) AS s, MIN(x) AS lo, COUNT(DISTINCT x) AS d
FROM (VALUES (1), (2)) AS t(x) WHERE x > 5;

SELECT x, COUNT(*) AS n FROM (VALUES (1), (2)) AS t(x) WHERE x > 5 GROUP BY x;
