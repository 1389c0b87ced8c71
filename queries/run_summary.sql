-- One line per run: what the generator's manifest says (scenario, model, start,
-- end, requests sent, spans exported and dropped) beside what the store holds
-- (request spans, errors, error rate, p99). Spans stored should equal spans
-- exported; a gap means telemetry was lost on the way.
-- Parameters: none.
WITH stored AS (
    SELECT
        run_id,
        COUNT(*) AS spans_stored,
        SUM(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors,
        percentile(latency_ms, 0.99) AS p99_ms
    FROM requests
    GROUP BY run_id
)
SELECT
    r.run_id,
    r.scenario,
    r.model,
    r.started_at,
    r.ended_at,
    r.requests_sent,
    r.spans_exported,
    r.spans_dropped,
    s.spans_stored,
    s.errors,
    CAST(s.errors AS DOUBLE) / s.spans_stored AS error_rate,
    s.p99_ms
FROM runs r
LEFT JOIN stored s ON s.run_id = r.run_id
ORDER BY r.started_at;
