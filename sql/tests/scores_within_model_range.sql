-- Spine age is an expectation over the model's completed-year classes (at their midpoints, a + 0.5),
-- so it lies within its age range (up to max + 1);
-- its SD is finite and non-negative.
SELECT scores.content_hash, scores.model_id, scores.spine_age_years, scores.spine_age_sd_years
FROM scores
LEFT JOIN models ON models.model_id = scores.model_id
WHERE models.model_id IS NULL
    OR NOT isfinite(scores.spine_age_years)
    OR scores.spine_age_years < models.min_age_years - 1e-6
    OR scores.spine_age_years > models.max_age_years + 1 + 1e-6
    OR NOT isfinite(scores.spine_age_sd_years)
    OR scores.spine_age_sd_years < 0;
