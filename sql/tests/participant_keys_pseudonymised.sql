-- Participant identifiers are stored only as keyed hashes ("p_" + 24 hex digits).
SELECT 'images' AS tbl, participant_key AS value
FROM images
WHERE participant_key IS NOT NULL AND NOT regexp_full_match(participant_key, 'p_[0-9a-f]{24}')
UNION ALL
SELECT 'cohort' AS tbl, participant_id AS value
FROM cohort
WHERE participant_id IS NULL OR NOT regexp_full_match(participant_id, 'p_[0-9a-f]{24}');
