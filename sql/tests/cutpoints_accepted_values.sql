-- Cut points are finite and use a known rule (cut_rule, or the 0.1.0 column comparison where it is NULL).
SELECT name, value, comparison, cut_rule
FROM cutpoints
WHERE comparison NOT IN ('>=', '>')
    OR (cut_rule IS NOT NULL AND cut_rule NOT IN ('>=', '>'))
    OR NOT isfinite(value);
