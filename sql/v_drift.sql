-- Drift watch: per model, run, manufacturer and study month, the mean predicted age, its SD and
-- (where the cohort gives chronological age for the baseline image) PAD, against a reference
-- period: the first 12 study months of that model's scores, all manufacturers pooled.
-- `delta_years` compares mean PAD when both the group and the reference have it, else mean
-- spine age; `drift_flag` marks |delta| > 2 years. `epi_spineage.score.drift.drift_summary(con,
-- bound_years=...)` recomputes the flag with another bound or reference period.
CREATE OR REPLACE VIEW v_drift AS
WITH scored AS (
    SELECT
        scores.model_id,
        scores.run_id,
        coalesce(images.manufacturer, scores.manufacturer, '(unknown)') AS manufacturer,
        date_trunc('month', images.study_date)::DATE AS study_month,
        scores.spine_age_years,
        scores.spine_age_sd_years,
        cohort_scores.pad_years
    FROM scores
    LEFT JOIN images
        ON images.source_path = scores.source_path
        AND images.content_hash = scores.content_hash
    LEFT JOIN v_cohort_scores AS cohort_scores
        ON cohort_scores.content_hash = scores.content_hash
        AND cohort_scores.model_id = scores.model_id
),

groups AS (
    SELECT
        model_id,
        run_id,
        manufacturer,
        study_month,
        count(*) AS n_images,
        avg(spine_age_years) AS mean_spine_age_years,
        stddev_samp(spine_age_years) AS sd_spine_age_years,
        avg(spine_age_sd_years) AS mean_spine_age_sd_years,
        count(pad_years) AS n_with_age,
        avg(pad_years) AS mean_pad_years
    FROM scored
    GROUP BY model_id, run_id, manufacturer, study_month
),

reference_window AS (
    SELECT
        model_id,
        min(study_month) AS reference_start,
        (min(study_month) + INTERVAL 12 MONTH)::DATE AS reference_end
    FROM scored
    GROUP BY model_id
),

reference AS (
    SELECT
        scored.model_id,
        any_value(reference_window.reference_start) AS reference_start,
        any_value(reference_window.reference_end) AS reference_end,
        avg(scored.spine_age_years) AS reference_spine_age_years,
        avg(scored.pad_years) AS reference_pad_years
    FROM scored
    INNER JOIN reference_window
        ON reference_window.model_id = scored.model_id
        AND scored.study_month >= reference_window.reference_start
        AND scored.study_month < reference_window.reference_end
    GROUP BY scored.model_id
),

compared AS (
    SELECT
        groups.*,
        reference.reference_start,
        reference.reference_end,
        reference.reference_spine_age_years,
        reference.reference_pad_years,
        CASE
            WHEN groups.mean_pad_years IS NOT NULL AND reference.reference_pad_years IS NOT NULL
                THEN 'pad_years'
            ELSE 'spine_age_years'
        END AS drift_metric,
        CASE
            WHEN groups.mean_pad_years IS NOT NULL AND reference.reference_pad_years IS NOT NULL
                THEN groups.mean_pad_years - reference.reference_pad_years
            ELSE groups.mean_spine_age_years - reference.reference_spine_age_years
        END AS delta_years
    FROM groups
    LEFT JOIN reference ON reference.model_id = groups.model_id
)

SELECT
    *,
    2.0 AS bound_years,
    coalesce(abs(delta_years) > 2.0, FALSE) AS drift_flag
FROM compared;
