-- Version 4: which decoder produced the pixels each score was computed from (docs/guides/score.md#gpu).
-- 'cpu:pydicom' / 'cpu:opencv' for the CPU reader, 'gpu:nvimgcodec' for the GPU one. Lossless data
-- give the same pixels either way; for lossy codecs the decoders may differ by a grey level, so the
-- score's provenance names the one that was used. Scores written before version 4 stay NULL (CPU).
ALTER TABLE scores ADD COLUMN decoder VARCHAR;
