-- Throughput and errors over time for one run, in 10-second buckets of the
-- intended start: requests per second, errors per second, error rate and p99.
-- Parameters: run — the run id.
SELECT
    time_bucket('10s', intended_start) AS bucket_start,
    COUNT(*) / 10.0 AS requests_per_second,
    SUM(CASE WHEN is_error THEN 1 ELSE 0 END) / 10.0 AS errors_per_second,
    AVG(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate,
    percentile(latency_ms, 0.99) AS p99_ms
FROM requests
WHERE run_id = :'run'
GROUP BY 1
ORDER BY 1;
