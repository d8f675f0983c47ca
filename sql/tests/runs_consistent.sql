-- Finished runs have an end after their start and non-negative counts; status is a known value.
SELECT run_id, status, started_at, finished_at
FROM runs
WHERE status NOT IN ('running', 'finished', 'failed', 'interrupted')
    OR (status = 'finished' AND (finished_at IS NULL OR finished_at < started_at))
    OR least(n_seen, n_scored, n_skipped_known, n_not_spine, n_duplicates, n_errors, n_spooled) < 0;
