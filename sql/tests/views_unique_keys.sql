-- Views keep their grain: one latest score per content hash, one baseline image and one cohort
-- row per participant.
SELECT 'v_latest_score' AS view_name, content_hash AS key_value, count(*) AS n
FROM v_latest_score GROUP BY content_hash HAVING count(*) > 1
UNION ALL
SELECT 'v_baseline_image', participant_key, count(*)
FROM v_baseline_image GROUP BY participant_key HAVING count(*) > 1
UNION ALL
SELECT 'v_cohort_scores', participant_id, count(*)
FROM v_cohort_scores GROUP BY participant_id HAVING count(*) > 1;
