-- Accelerated spine ageing (docs/methods.md#accelerated): PAD compared with the frozen tertile cut point.
-- Cut points come from `cutpoints`: 'pad_tertile_years' for uncorrected PAD and
-- 'pad_corrected_tertile_years' for corrected PAD; rule cut_rule '>=' (default) or '>' (the 0.1.0
-- column `comparison` where cut_rule is NULL). Set them with
-- `python -m epi_spineage.cohort cutpoints set --db F --name pad_tertile_years --value V`
-- or `report --db F --save-cutpoints` (docs/guides/score.md#cutpoints).
-- PAD is rounded to 1e-9 years first so float noise does not split tied values.
-- The flags are NULL when the cut point (or the PAD) is missing.
CREATE OR REPLACE VIEW v_accelerated AS
WITH cut_raw AS (
    SELECT value AS cut_years, coalesce(cut_rule, comparison) AS cut_rule
    FROM cutpoints WHERE name = 'pad_tertile_years'
),

cut_corrected AS (
    SELECT value AS cut_years, coalesce(cut_rule, comparison) AS cut_rule
    FROM cutpoints WHERE name = 'pad_corrected_tertile_years'
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
        WHEN cut_raw.cut_rule = '>' THEN round(scores.pad_years, 9) > cut_raw.cut_years
        ELSE round(scores.pad_years, 9) >= cut_raw.cut_years
    END AS accelerated,
    CASE
        WHEN cut_corrected.cut_rule = '>' THEN round(scores.pad_corrected_years, 9) > cut_corrected.cut_years
        ELSE round(scores.pad_corrected_years, 9) >= cut_corrected.cut_years
    END AS accelerated_corrected
FROM v_cohort_scores AS scores
LEFT JOIN cut_raw ON TRUE
LEFT JOIN cut_corrected ON TRUE;
