-- Throughput against concurrency for a run's ladder steps: the input of a USL
-- fit. Concurrency is given as configured and as measured by Little's law
-- (throughput × mean latency), which shows when the generator could not hold
-- the configured level. Throughput is requests over the span of their
-- scheduled starts, so slow stragglers at the end of a step do not dilute it.
-- Parameters: run — the run id.
SELECT
    concurrency,
    COUNT(*) AS requests,
    COUNT(*) / ((CAST(MAX(intended_start) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)) / 1e9) AS throughput,
    AVG(latency_ms) AS mean_latency_ms,
    COUNT(*) / ((CAST(MAX(intended_start) AS BIGINT) - CAST(MIN(intended_start) AS BIGINT)) / 1e9) * AVG(latency_ms) / 1000 AS measured_concurrency
FROM requests
WHERE run_id = :'run' AND stage <> 'warmup'
GROUP BY concurrency
ORDER BY concurrency;
