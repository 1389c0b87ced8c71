-- Latency percentiles by endpoint (the scenario step) for one run, warm-up excluded.
-- latency_ms counts from each request's intended start, so time a request waited
-- inside the generator is included (no coordinated omission); service_ms counts
-- from the moment it was sent. Percentiles are exact, interpolated linearly
-- between the two closest ranks (numpy's default).
-- Parameters: run — the run id.
SELECT
    step AS endpoint,
    COUNT(*) AS requests,
    percentile(latency_ms, 0.5) AS p50_ms,
    percentile(latency_ms, 0.9) AS p90_ms,
    percentile(latency_ms, 0.99) AS p99_ms,
    percentile(latency_ms, 0.999) AS p999_ms,
    MAX(latency_ms) AS max_ms,
    percentile(service_ms, 0.99) AS service_p99_ms
FROM requests
WHERE run_id = :'run' AND stage <> 'warmup'
GROUP BY step
ORDER BY step;
