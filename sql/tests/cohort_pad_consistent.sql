-- PAD is spine age minus age, and the corrected PAD follows the Beheshti formula.
SELECT participant_id, pad_years, pad_corrected_years
FROM v_cohort_scores
WHERE abs(pad_years - (spine_age_years - age_years)) > 1e-9
    OR (bias_alpha IS NOT NULL AND bias_beta IS NOT NULL
        AND abs(pad_corrected_years - (pad_years - (bias_alpha * age_years + bias_beta))) > 1e-9);
