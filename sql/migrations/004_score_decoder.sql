-- Version 4: which decoder produced the pixels each score was computed from (docs/guides/score.md#gpu).
-- 'cpu:pydicom' / 'cpu:opencv' for the CPU reader, 'gpu:nvimgcodec' for the GPU one. Lossless data
-- give the same pixels either way; for lossy codecs the decoders may differ by a grey level, so the
-- score's provenance names the one that was used. Scores written before version 4 stay NULL (CPU).
ALTER TABLE scores ADD COLUMN IF NOT EXISTS decoder VARCHAR;
-- The run's decode path ('cpu' or 'gpu') and, on the GPU path, how many images the GPU decoded and
-- how many went to the CPU reader instead (a codec or layout the GPU path does not take, or a refusal).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS decode VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_gpu_decoded BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_cpu_fallback BIGINT;
