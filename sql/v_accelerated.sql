-- Accelerated spine ageing (METHODS.md section 7): PAD compared with the frozen tertile cut point.
-- Cut points come from `cutpoints`: 'pad_tertile_years' for uncorrected PAD and
-- 'pad_corrected_tertile_years' for corrected PAD; comparison '>=' (default) or '>'.
-- PAD is rounded to 1e-9 years first so float noise does not split tied values.
-- The flags are NULL when the cut point (or the PAD) is missing.
CREATE OR REPLACE VIEW v_accelerated AS
WITH cut_raw AS (
    SELECT value AS cut_years, comparison FROM cutpoints WHERE name = 'pad_tertile_years'
),

cut_corrected AS (
    SELECT value AS cut_years, comparison FROM cutpoints WHERE name = 'pad_corrected_tertile_years'
)

SELECT
    scores.participant_id,
    scores.cohort,
    scores.age_years,
    scores.sex,
    scores.model_id,
    scores.spine_age_years,
    scores.pad_years,
    scores.pad_corrected_years,
    cut_raw.cut_years AS pad_cut_years,
    cut_corrected.cut_years AS pad_corrected_cut_years,
    CASE
        WHEN cut_raw.comparison = '>' THEN round(scores.pad_years, 9) > cut_raw.cut_years
        ELSE round(scores.pad_years, 9) >= cut_raw.cut_years
    END AS accelerated,
    CASE
        WHEN cut_corrected.comparison = '>' THEN round(scores.pad_corrected_years, 9) > cut_corrected.cut_years
        ELSE round(scores.pad_corrected_years, 9) >= cut_corrected.cut_years
    END AS accelerated_corrected
FROM v_cohort_scores AS scores
LEFT JOIN cut_raw ON TRUE
LEFT JOIN cut_corrected ON TRUE;
