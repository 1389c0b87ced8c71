-- Reconciles a run's ledger (every request the generator scheduled) with the
-- spans the store holds: requests scheduled, spans the generator says it
-- exported, spans stored, exported spans that never arrived (lost), spans
-- stored more than once, and stored spans the ledger does not know.
-- Parameters: run — the run id.
WITH ledger_rows AS (
    SELECT trace_id, span_id, span_exported FROM ledger WHERE run_id = :'run'
),
span_rows AS (
    SELECT trace_id, span_id, COUNT(*) AS copies FROM requests WHERE run_id = :'run' GROUP BY trace_id, span_id
)
SELECT
    (SELECT COUNT(*) FROM ledger_rows) AS scheduled,
    (SELECT COUNT(*) FROM ledger_rows WHERE span_exported) AS exported,
    (SELECT COALESCE(SUM(copies), 0) FROM span_rows) AS stored,
    (SELECT COUNT(*) FROM ledger_rows l LEFT JOIN span_rows s
        ON l.trace_id = s.trace_id AND l.span_id = s.span_id
        WHERE l.span_exported AND s.copies IS NULL) AS lost,
    (SELECT COUNT(*) FROM span_rows WHERE copies > 1) AS duplicated,
    (SELECT COUNT(*) FROM span_rows s LEFT JOIN ledger_rows l
        ON l.trace_id = s.trace_id AND l.span_id = s.span_id
        WHERE l.trace_id IS NULL) AS unknown;
