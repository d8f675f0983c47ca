-- Every error names a file, a run and a type.
SELECT error_id, source_path, error_type
FROM errors
WHERE source_path IS NULL OR run_id IS NULL
    OR error_type NOT IN ('unreadable', 'truncated', 'not_an_image', 'duplicate', 'preprocess', 'error', 'predict', 'too_large');
