-- Error breakdown for one run: how many requests failed of each type (DNS,
-- connect, timeout, connection reset, HTTP 4xx/5xx, check failed), with which
-- status, on which endpoints, their share of all requests, and when they started
-- and stopped happening.
-- Parameters: run — the run id.
SELECT
    error_type,
    status,
    COUNT(*) AS errors,
    COUNT(*) / CAST((SELECT COUNT(*) FROM requests WHERE run_id = :'run') AS DOUBLE) AS share_of_requests,
    COUNT(DISTINCT step) AS endpoints,
    MIN(intended_start) AS first_seen,
    MAX(intended_start) AS last_seen
FROM requests
WHERE run_id = :'run' AND is_error
GROUP BY error_type, status
ORDER BY errors DESC, error_type;
