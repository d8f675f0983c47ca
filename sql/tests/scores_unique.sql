-- One score per (image content, model).
SELECT content_hash, model_id, count(*) AS n
FROM scores
GROUP BY content_hash, model_id
HAVING count(*) > 1;
