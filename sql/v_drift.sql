-- Drift watch: per model, run, manufacturer and study month, the mean predicted age, its SD and
-- (where the cohort gives chronological age for the baseline image) PAD, against a reference
-- period: the first 12 study months of that model's scores, all manufacturers pooled.
-- `delta_years` compares mean PAD when both the group and the reference have it, else mean
-- spine age; `drift_flag` marks |delta| > 2 years in a group of at least `drift_min_count` images
-- (the `settings` row of that name, default 30; smaller groups are too noisy to flag:
-- docs/conventions.md#drift-min-count). `run_sd_years` is the SD of all of that run's predictions
-- and `flat_run` marks a run of at least 10 scores whose SD is under 0.5 years (a degenerate model:
-- docs/guides/score.md#flat-runs). `epi_spineage.score.drift.drift_summary(con, bound_years=...,
-- min_count=...)` recomputes the flag with another bound, minimum count or reference period.
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

settings_min AS (
    SELECT coalesce(
        (SELECT max(TRY_CAST(value AS BIGINT)) FROM settings WHERE name = 'drift_min_count'), 30
    ) AS drift_min_count
),

run_spread AS (
    SELECT
        run_id,
        model_id,
        count(*) AS run_n,
        stddev_samp(spine_age_years) AS run_sd_years
    FROM scores
    GROUP BY run_id, model_id
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
    compared.*,
    2.0 AS bound_years,
    settings_min.drift_min_count,
    coalesce(compared.n_images >= settings_min.drift_min_count AND abs(compared.delta_years) > 2.0, FALSE)
        AS drift_flag,
    run_spread.run_sd_years,
    coalesce(run_spread.run_n >= 10 AND run_spread.run_sd_years < 0.5, FALSE) AS flat_run
FROM compared
CROSS JOIN settings_min
LEFT JOIN run_spread
    ON run_spread.run_id IS NOT DISTINCT FROM compared.run_id
    AND run_spread.model_id = compared.model_id;
