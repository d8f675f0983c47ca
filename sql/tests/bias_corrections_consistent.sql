-- Per-manufacturer bias corrections (schema version 5): scope is 'manufacturer' (own alpha and beta) or
-- 'pooled' (no alpha or beta: the model's pooled line applies), one calibration set per model, and every
-- row belongs to a registered model.
SELECT model_id, manufacturer, scope
FROM bias_corrections
WHERE
    scope NOT IN ('manufacturer', 'pooled')
    OR (scope = 'manufacturer' AND (alpha IS NULL OR beta IS NULL))
    OR (scope = 'pooled' AND (alpha IS NOT NULL OR beta IS NOT NULL))
    OR model_id NOT IN (SELECT model_id FROM models)
    OR model_id IN (
        SELECT model_id FROM bias_corrections GROUP BY model_id HAVING count(DISTINCT calibration_set) > 1
    );
