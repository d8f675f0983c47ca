-- The cohort joined with each participant's baseline-image score: PAD and bias-corrected PAD.
-- Beheshti correction (docs/methods.md#beheshti): corrected = spine age - (alpha * age + beta), with
-- alpha and beta from the scoring model's metadata: the arithmetic of epi_spineage.model.bias.beheshti_correct
-- (tests/stats/test_stats_beheshti_sql.py checks that they agree). Both PADs are given; never overwritten:
-- pad_years here is the raw PAD, also named pad_raw_years as in Python (docs/conventions.md#pad).
-- Corrected PAD is free of age only in the data the correction was fitted on: keep age in models.
-- Participants the correction was fitted on (bias_correction.fit_ids, keyed hashes) get NULL corrected
-- values, as BiasCorrection.apply refuses them: their corrected accuracy would be flattered.
-- Per-manufacturer correction (schema version 5, docs/methods.md#domain-shift): where table bias_corrections
-- holds rows for the model, spine_age_corrected_by_manufacturer_years uses the row of the image's manufacturer
-- (NULL manufacturer = '(missing)'): its own alpha and beta where scope = 'manufacturer', else the pooled ones
-- (scope 'pooled': too few calibration images, or a manufacturer absent from the calibration set).
-- bias_correction_scope says which; calibration participants get NULL, as ManufacturerBiasCorrection.apply
-- refuses them, and so do pooled-fit participants where the pooled line applies. All NULL when the model has
-- no per-manufacturer rows.
CREATE OR REPLACE VIEW v_cohort_scores AS
WITH bias AS (
    SELECT
        model_id,
        json_extract_string(metadata_json, '$.bias_correction.method') AS bias_method,
        TRY_CAST(json_extract(metadata_json, '$.bias_correction.alpha') AS DOUBLE) AS bias_alpha,
        TRY_CAST(json_extract(metadata_json, '$.bias_correction.beta') AS DOUBLE) AS bias_beta,
        json_extract_string(metadata_json, '$.bias_correction.fit_ids[*]') AS bias_fit_ids
    FROM models
),

calibrated AS (
    SELECT
        model_id,
        min(calibration_set) AS calibration_set,
        list_distinct(flatten(list(coalesce(fit_ids, [])))) AS calibration_ids
    FROM bias_corrections
    GROUP BY model_id
),

joined AS (
    SELECT
        cohort.participant_id,
        cohort.cohort,
        cohort.split,
        coalesce(cohort.modality, baseline.modality) AS modality,
        cohort.age_years,
        cohort.sex,
        baseline.content_hash,
        baseline.source_path,
        baseline.study_date,
        baseline.manufacturer,
        baseline.model_id,
        baseline.spine_age_years,
        baseline.spine_age_sd_years,
        bias.bias_method,
        bias.bias_alpha,
        bias.bias_beta,
        coalesce(list_contains(bias.bias_fit_ids, cohort.participant_id), false) AS in_bias_fit,
        calibrated.calibration_set AS bias_calibration_set,
        CASE WHEN calibrated.model_id IS NOT NULL
            THEN CASE WHEN per_mfr.scope = 'manufacturer' THEN 'manufacturer' ELSE 'pooled' END
        END AS bias_correction_scope,
        per_mfr.alpha AS bias_mfr_alpha,
        per_mfr.beta AS bias_mfr_beta,
        coalesce(list_contains(calibrated.calibration_ids, cohort.participant_id), false) AS in_calibration
    FROM cohort
    INNER JOIN v_baseline_image AS baseline
        ON baseline.participant_key = cohort.participant_id
    LEFT JOIN bias
        ON bias.model_id = baseline.model_id
    LEFT JOIN calibrated
        ON calibrated.model_id = baseline.model_id
    LEFT JOIN bias_corrections AS per_mfr
        ON
            per_mfr.model_id = baseline.model_id
            AND per_mfr.manufacturer = coalesce(baseline.manufacturer, '(missing)')
),

lines AS (
    SELECT
        *,
        CASE
            WHEN bias_correction_scope = 'manufacturer' AND NOT in_calibration THEN bias_mfr_alpha
            WHEN bias_correction_scope = 'pooled' AND NOT in_calibration AND NOT in_bias_fit THEN bias_alpha
        END AS mfr_line_alpha,
        CASE
            WHEN bias_correction_scope = 'manufacturer' AND NOT in_calibration THEN bias_mfr_beta
            WHEN bias_correction_scope = 'pooled' AND NOT in_calibration AND NOT in_bias_fit THEN bias_beta
        END AS mfr_line_beta
    FROM joined
)

SELECT
    * EXCLUDE (mfr_line_alpha, mfr_line_beta),
    spine_age_years - age_years AS pad_years,
    spine_age_years - age_years AS pad_raw_years,
    CASE WHEN NOT in_bias_fit
        THEN spine_age_years - (bias_alpha * age_years + bias_beta) END AS spine_age_corrected_years,
    CASE WHEN NOT in_bias_fit
        THEN spine_age_years - (bias_alpha * age_years + bias_beta) - age_years END AS pad_corrected_years,
    spine_age_years - (mfr_line_alpha * age_years + mfr_line_beta) AS spine_age_corrected_by_manufacturer_years,
    spine_age_years - (mfr_line_alpha * age_years + mfr_line_beta) - age_years AS pad_corrected_by_manufacturer_years
FROM lines;
