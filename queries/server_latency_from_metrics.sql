-- Server latency by route from the target's own histogram metrics, over a time
-- window: p50 and p99 from the explicit-bucket histogram (Prometheus's
-- histogram_quantile rule, buckets summed across points like sum by (le)), and
-- beside it the observation count of the exponential histogram of the same
-- metric. Useful where spans are sampled but metrics are complete.
-- Parameters: service — service.name; from, to — the window (e.g. 2026-03-02T10:00:00Z).
WITH explicit AS (
    SELECT
        attributes['http.route'] AS route,
        SUM(count) AS requests,
        histogram_quantile(explicit_bounds, bucket_sum(bucket_counts), 0.5) AS p50_s,
        histogram_quantile(explicit_bounds, bucket_sum(bucket_counts), 0.99) AS p99_s
    FROM metrics_histogram
    WHERE metric_name = 'http.server.request.duration'
      AND service_name = :'service'
      AND time > CAST(:'from' AS TIMESTAMP) AND time <= CAST(:'to' AS TIMESTAMP)
    -- Buckets add up only between points with the same bounds.
    GROUP BY 1, explicit_bounds
),
exponential AS (
    SELECT
        attributes['http.route'] AS route,
        COUNT(*) AS points,
        SUM(count) AS requests
    FROM metrics_exp_histogram
    WHERE metric_name = 'http.server.request.duration'
      AND service_name = :'service'
      AND time > CAST(:'from' AS TIMESTAMP) AND time <= CAST(:'to' AS TIMESTAMP)
    GROUP BY 1
)
SELECT
    e.route,
    e.requests,
    e.p50_s * 1000 AS p50_ms,
    e.p99_s * 1000 AS p99_ms,
    x.requests AS exp_histogram_requests
FROM explicit e
LEFT JOIN exponential x ON x.route = e.route
ORDER BY e.route;
