-- Per participant, the baseline (index) image: the earliest study date among scored images,
-- ties broken by path so the choice is stable. One row per participant_key.
CREATE OR REPLACE VIEW v_baseline_image AS
WITH scored_images AS (
    SELECT * FROM v_latest_score WHERE participant_key IS NOT NULL
),

ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY participant_key
            ORDER BY study_date NULLS LAST, source_path
        ) AS image_rank,
        count(*) OVER (PARTITION BY participant_key) AS n_images
    FROM scored_images
)

SELECT
    participant_key,
    content_hash,
    source_path,
    study_date,
    modality,
    manufacturer,
    model_id,
    spine_age_years,
    spine_age_sd_years,
    n_images
FROM ranked
WHERE image_rank = 1;
