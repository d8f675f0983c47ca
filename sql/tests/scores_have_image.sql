-- Every score points at a recorded image with the same pixels, and carries its provenance.
SELECT scores.content_hash, scores.source_path
FROM scores
LEFT JOIN images
    ON images.source_path = scores.source_path AND images.content_hash = scores.content_hash
WHERE images.source_path IS NULL
    OR scores.weights_hash IS NULL
    OR scores.preprocess_config_hash IS NULL
    OR scores.package_version IS NULL
    OR scores.run_id IS NULL;
