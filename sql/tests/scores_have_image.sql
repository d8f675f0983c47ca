-- Every score points at a recorded image with the same pixels, and carries its provenance. A score
-- whose path now holds other pixels (a corrected re-export at the same path, scored again later) is
-- superseded, not orphaned: its image row was recorded after it.
SELECT scores.content_hash, scores.source_path
FROM scores
LEFT JOIN images
    ON images.source_path = scores.source_path
WHERE images.source_path IS NULL
    OR (images.content_hash <> scores.content_hash AND images.recorded_at < scores.scored_at)
    OR scores.weights_hash IS NULL
    OR scores.preprocess_config_hash IS NULL
    OR scores.package_version IS NULL
    OR scores.run_id IS NULL;
