-- The slowest requests of a run, with the trace ids to open them in a trace
-- viewer (or to find the target's spans: SELECT * FROM spans WHERE trace_id_hex(trace_id) = '…').
-- Parameters: run — the run id; limit — how many (e.g. 20).
SELECT
    trace_id_hex(trace_id) AS trace_id,
    step AS endpoint,
    stage,
    latency_ms,
    service_ms,
    latency_ms - service_ms AS queued_ms,
    status,
    error_type,
    intended_start
FROM requests
WHERE run_id = :'run'
ORDER BY latency_ms DESC, trace_id
LIMIT :limit;
