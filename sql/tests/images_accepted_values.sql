-- Accepted values for the image table's coded columns.
SELECT source_path, qc_status, modality, format
FROM images
WHERE qc_status NOT IN ('ok', 'not_spine', 'duplicate')
    OR (modality IS NOT NULL AND modality NOT IN ('radiograph', 'vfa'))
    OR (format IS NOT NULL AND format NOT IN ('dicom', 'png', 'jpeg', 'tiff'));
