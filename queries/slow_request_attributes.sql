-- What slow requests have in common: for each attribute value (endpoint, stage,
-- status class, virtual-user slot), its share among the requests slower than
-- the run's p99 against its share among all requests. A lift well above 1 points
-- at a cause.
-- Parameters: run — the run id.
WITH r AS (
    SELECT * FROM requests WHERE run_id = :'run'
),
threshold AS (
    SELECT percentile(latency_ms, 0.99) AS p99 FROM r
),
labelled AS (
    SELECT r.*, r.latency_ms > t.p99 AS slow FROM r CROSS JOIN threshold t
),
attributes AS (
    SELECT 'endpoint' AS attribute, step AS value, slow FROM labelled
    UNION ALL SELECT 'stage', stage, slow FROM labelled
    UNION ALL SELECT 'status_class', status_class, slow FROM labelled
)
SELECT
    attribute,
    value,
    SUM(CASE WHEN slow THEN 1 ELSE 0 END) AS slow_requests,
    COUNT(*) AS requests,
    SUM(CASE WHEN slow THEN 1 ELSE 0 END) / CAST((SELECT SUM(CASE WHEN slow THEN 1 ELSE 0 END) FROM labelled) AS DOUBLE) AS share_of_slow,
    COUNT(*) / CAST((SELECT COUNT(*) FROM labelled) AS DOUBLE) AS share_of_all,
    (SUM(CASE WHEN slow THEN 1 ELSE 0 END) / CAST((SELECT SUM(CASE WHEN slow THEN 1 ELSE 0 END) FROM labelled) AS DOUBLE))
        / (COUNT(*) / CAST((SELECT COUNT(*) FROM labelled) AS DOUBLE)) AS lift
FROM attributes
GROUP BY attribute, value
HAVING SUM(CASE WHEN slow THEN 1 ELSE 0 END) > 0
ORDER BY lift DESC, attribute, value
LIMIT 20;
