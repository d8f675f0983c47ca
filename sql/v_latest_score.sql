-- Latest score per image content from ONE model, so that no analysis mixes models: the current model
-- is the one that has scored the most images (ties: the most recently used), and every row carries its
-- model_id. Images that model has not scored yet are absent until it scores them (a nightly run with a
-- new model rescores everything, so it takes over once it covers more images than the old one).
-- One row per content_hash.
CREATE OR REPLACE VIEW v_latest_score AS
WITH current_model AS (
    SELECT model_id
    FROM scores
    GROUP BY model_id
    ORDER BY count(DISTINCT content_hash) DESC, max(scored_at) DESC, model_id
    LIMIT 1
),

ranked_scores AS (
    SELECT
        s.*,
        row_number() OVER (
            PARTITION BY s.content_hash ORDER BY s.scored_at DESC
        ) AS score_rank
    FROM scores AS s
    WHERE s.model_id = (SELECT model_id FROM current_model)
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
