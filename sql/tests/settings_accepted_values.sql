-- Settings the views read hold usable values: drift_min_count is a whole number >= 1.
SELECT name, value
FROM settings
WHERE name = 'drift_min_count' AND coalesce(TRY_CAST(value AS BIGINT) >= 1, FALSE) = FALSE;
