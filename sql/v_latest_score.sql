-- Latest score per image content: the most recent score of each content hash (any model), with
-- the image's tags. One row per content_hash.
CREATE OR REPLACE VIEW v_latest_score AS
WITH ranked_scores AS (
    SELECT
        s.*,
        row_number() OVER (
            PARTITION BY s.content_hash ORDER BY s.scored_at DESC, s.model_id
        ) AS score_rank
    FROM scores AS s
),

latest AS (
    SELECT * EXCLUDE (score_rank) FROM ranked_scores WHERE score_rank = 1
)

SELECT
    latest.content_hash,
    latest.model_id,
    latest.spine_age_years,
    latest.spine_age_sd_years,
    latest.scored_at,
    latest.run_id,
    latest.source_path,
    images.participant_key,
    images.study_date,
    images.modality,
    images.dicom_modality,
    images.view_position,
    images.manufacturer,
    images.sop_instance_uid
FROM latest
LEFT JOIN images
    ON images.source_path = latest.source_path
    AND images.content_hash = latest.content_hash;
