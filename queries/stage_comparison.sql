-- Per-stage comparison for one run: for each load stage (warm-up, each ramp or
-- ladder step), its concurrency, duration, throughput, latency percentiles and
-- error rate, in the order the stages ran.
-- Parameters: run — the run id.
SELECT
    stage,
    MAX(concurrency) AS concurrency,
    COUNT(*) AS requests,
    (CAST(MAX(intended_start) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)) / 1e9 AS seconds,
    COUNT(*) / NULLIF((CAST(MAX(intended_start) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)) / 1e9, 0) AS requests_per_second,
    percentile(latency_ms, 0.5) AS p50_ms,
    percentile(latency_ms, 0.99) AS p99_ms,
    AVG(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate
FROM requests
WHERE run_id = :'run'
GROUP BY stage
ORDER BY MIN(intended_start);
