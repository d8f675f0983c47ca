-- The cohort joined with each participant's baseline-image score: PAD and bias-corrected PAD.
-- Beheshti correction (docs/methods.md#beheshti): corrected = spine age - (alpha * age + beta), with
-- alpha and beta from the scoring model's metadata: the arithmetic of epi_spineage.model.bias.beheshti_correct
-- (tests/stats/test_stats_beheshti_sql.py checks that they agree). Both PADs are given; never overwritten:
-- pad_years here is the raw PAD, also named pad_raw_years as in Python (docs/conventions.md#pad).
-- Corrected PAD is free of age only in the data the correction was fitted on: keep age in models.
-- Participants the correction was fitted on (bias_correction.fit_ids, keyed hashes) get NULL corrected
-- values, as BiasCorrection.apply refuses them: their corrected accuracy would be flattered.
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
        coalesce(list_contains(bias.bias_fit_ids, cohort.participant_id), false) AS in_bias_fit
    FROM cohort
    INNER JOIN v_baseline_image AS baseline
        ON baseline.participant_key = cohort.participant_id
    LEFT JOIN bias
        ON bias.model_id = baseline.model_id
)

SELECT
    *,
    spine_age_years - age_years AS pad_years,
    spine_age_years - age_years AS pad_raw_years,
    CASE WHEN NOT in_bias_fit
        THEN spine_age_years - (bias_alpha * age_years + bias_beta) END AS spine_age_corrected_years,
    CASE WHEN NOT in_bias_fit
        THEN spine_age_years - (bias_alpha * age_years + bias_beta) - age_years END AS pad_corrected_years
FROM joined;
