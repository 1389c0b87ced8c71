-- A load run beside a production window for the same route, measured where both
-- are measured alike: the target's own SERVER spans. The run's server spans are
-- those in the traces the run's requests started.
-- Parameters: run — the run id; route — the http.route (e.g. /api/checkout);
-- from, to — the production window (e.g. 2026-03-01T10:00:00Z).
WITH run_traces AS (
    SELECT DISTINCT trace_id FROM requests WHERE run_id = :'run'
),
tagged AS (
    SELECT 'run ' || :'run' AS source, s.duration_ns, s.status_code
    FROM server_spans s JOIN run_traces r ON s.trace_id = r.trace_id
    WHERE s.http_route = :'route'
    UNION ALL
    SELECT 'production', duration_ns, status_code
    FROM server_spans
    WHERE deployment_environment = 'production'
      AND http_route = :'route'
      AND start_time >= CAST(:'from' AS TIMESTAMP) AND start_time < CAST(:'to' AS TIMESTAMP)
)
SELECT
    source,
    COUNT(*) AS requests,
    percentile(duration_ns / 1e6, 0.5) AS p50_ms,
    percentile(duration_ns / 1e6, 0.9) AS p90_ms,
    percentile(duration_ns / 1e6, 0.99) AS p99_ms,
    AVG(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM tagged
GROUP BY source
ORDER BY source DESC;
