-- Cut points are finite and use a known comparison.
SELECT name, value, comparison
FROM cutpoints
WHERE comparison NOT IN ('>=', '>') OR NOT isfinite(value);
