-- Saturation: for each stage of a run, the throughput and p99 the generator saw
-- beside the target's CPU utilisation and in-flight requests from its metrics
-- (gauges averaged over the stage's time span). Where CPU flattens while p99
-- climbs, the target is saturated.
-- Parameters: run — the run id; service — the target's service.name.
WITH stages AS (
    SELECT
        stage,
        MAX(concurrency) AS concurrency,
        MIN(intended_start) AS stage_start,
        MAX(intended_start) AS stage_end,
        COUNT(*) AS requests,
        percentile(latency_ms, 0.99) AS p99_ms
    FROM requests
    WHERE run_id = :'run'
    GROUP BY stage
),
gauges AS (
    SELECT time, metric_name, value
    FROM metrics_number
    WHERE service_name = :'service'
      AND metric_name IN ('system.cpu.utilization', 'http.server.active_requests')
)
SELECT
    s.stage,
    s.concurrency,
    s.requests / NULLIF((CAST(s.stage_end AS BIGINT) - CAST(s.stage_start AS BIGINT)) / 1e9, 0) AS requests_per_second,
    s.p99_ms,
    AVG(CASE WHEN g.metric_name = 'system.cpu.utilization' THEN g.value END) AS cpu_utilization,
    AVG(CASE WHEN g.metric_name = 'http.server.active_requests' THEN g.value END) AS active_requests
FROM stages s
LEFT JOIN gauges g ON g.time > s.stage_start AND g.time <= s.stage_end
GROUP BY s.stage, s.concurrency, s.requests, s.stage_start, s.stage_end, s.p99_ms
ORDER BY s.stage_start;
