-- One key per database (docs/privacy.md#one-key-per-database): at most one recorded key, and every
-- keyed hash in images and cohort made with it. Mixed keys never join, so they must not pass silently.
SELECT 'db_key' AS tbl, key_fingerprint
FROM db_key
WHERE (SELECT count(*) FROM db_key) > 1
UNION ALL
SELECT DISTINCT 'images' AS tbl, key_fingerprint
FROM images
WHERE key_fingerprint IS NOT NULL AND key_fingerprint NOT IN (SELECT key_fingerprint FROM db_key)
UNION ALL
SELECT DISTINCT 'cohort' AS tbl, key_fingerprint
FROM cohort
WHERE key_fingerprint IS NOT NULL AND key_fingerprint NOT IN (SELECT key_fingerprint FROM db_key);
