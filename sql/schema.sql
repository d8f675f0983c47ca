-- epi_spineage DuckDB schema: the tables the scorer, `ingest` and `cohort` write.
-- Plain SQL that runs in the `duckdb` shell; every statement is idempotent (IF NOT EXISTS).
-- Identifiers: participant ids appear only as keyed hashes (HMAC-SHA256, "p_" + 24 hex);
-- patient names are never stored.

-- One row per file path seen by the scorer. source_path is the keyed hash of the path (a folder path or
-- "ARCHIVE::MEMBER"): "h_" + 32 hex digits (docs/privacy.md#stored-paths); raw only with --store-paths.
-- Two paths holding the same pixels share a content_hash (qc_status = 'duplicate' for the later one).
CREATE TABLE IF NOT EXISTS images (
    source_path                VARCHAR PRIMARY KEY,
    content_hash               VARCHAR NOT NULL,   -- SHA-256 of decoded pixels + shape + dtype
    file_size_bytes            BIGINT,
    sop_instance_uid           VARCHAR,
    sop_class_uid              VARCHAR,
    format                     VARCHAR,            -- dicom / png / jpeg / tiff
    modality                   VARCHAR,            -- radiograph / vfa (inferred)
    dicom_modality             VARCHAR,            -- the DICOM Modality tag (DX, CR, BMD, ...)
    view_position              VARCHAR,
    body_part_examined         VARCHAR,
    series_description         VARCHAR,
    study_date                 DATE,
    pixel_spacing_row_mm       DOUBLE,
    pixel_spacing_col_mm       DOUBLE,
    rows_px                    INTEGER,
    columns_px                 INTEGER,
    manufacturer               VARCHAR,
    photometric_interpretation VARCHAR,            -- as stored, before conversion to MONOCHROME2
    bits_stored                INTEGER,
    transfer_syntax_uid        VARCHAR,
    participant_key            VARCHAR,            -- keyed hash of DICOM PatientID
    key_fingerprint            VARCHAR,            -- which key made participant_key
    qc_status                  VARCHAR NOT NULL,   -- ok / not_spine / duplicate
    qc_reason                  VARCHAR,
    run_id                     VARCHAR,            -- the run that last recorded this path
    recorded_at                TIMESTAMP,
    file_fingerprint           VARCHAR             -- cheap change test for the rerun skip (size, CRC / head+tail)
);

-- One row per (image content, model): uncorrected spine age and its SD, with provenance.
CREATE TABLE IF NOT EXISTS scores (
    content_hash               VARCHAR NOT NULL,
    model_id                   VARCHAR NOT NULL,
    spine_age_years            DOUBLE NOT NULL,    -- expectation of the age distribution
    spine_age_sd_years         DOUBLE NOT NULL,    -- its SD (temperature applied)
    source_path                VARCHAR,            -- the path that was scored
    sop_instance_uid           VARCHAR,
    weights_hash               VARCHAR NOT NULL,
    preprocess_config_hash     VARCHAR NOT NULL,
    package_version            VARCHAR NOT NULL,
    run_id                     VARCHAR NOT NULL,
    photometric_interpretation VARCHAR,
    bits_stored                INTEGER,
    manufacturer               VARCHAR,
    device                     VARCHAR,            -- cpu / cuda (bf16)
    scored_at                  TIMESTAMP NOT NULL,
    decoder                    VARCHAR,            -- cpu:pydicom, cpu:opencv, gpu:nvimgcodec (version 4)
    PRIMARY KEY (content_hash, model_id)
);

-- One row per model checkpoint. metadata_json holds the checkpoint metadata, with the bias
-- correction normalised to {"method", "alpha", "beta"} under "bias_correction" (null when none).
CREATE TABLE IF NOT EXISTS models (
    model_id                   VARCHAR PRIMARY KEY,
    weights_hash               VARCHAR NOT NULL,
    backbone                   VARCHAR,
    min_age_years              DOUBLE,
    max_age_years              DOUBLE,
    temperature                DOUBLE,
    preprocess_config_hash     VARCHAR,
    preprocess_config_json     JSON,
    metadata_json              JSON,
    registered_at              TIMESTAMP
);

-- One row per scoring run (or Ray job). status: running / finished / failed / interrupted.
CREATE TABLE IF NOT EXISTS runs (
    run_id                     VARCHAR PRIMARY KEY,
    started_at                 TIMESTAMP NOT NULL,
    finished_at                TIMESTAMP,
    status                     VARCHAR NOT NULL,
    model_id                   VARCHAR,
    host                       VARCHAR,
    package_version            VARCHAR,
    device                     VARCHAR,
    archives                   VARCHAR,            -- JSON list of the archives given
    n_seen                     BIGINT,
    n_scored                   BIGINT,
    n_skipped_known            BIGINT,
    n_not_spine                BIGINT,
    n_duplicates               BIGINT,
    n_errors                   BIGINT,
    n_spooled                  BIGINT,
    decode                     VARCHAR,            -- cpu / gpu (version 4)
    n_gpu_decoded              BIGINT,             -- images decoded on the GPU (version 4)
    n_cpu_fallback             BIGINT              -- GPU path: images the CPU reader decoded instead (version 4)
);

-- The key this database belongs to: one row, recorded by the first writer; any other key is refused.
CREATE TABLE IF NOT EXISTS db_key (
    key_fingerprint            VARCHAR PRIMARY KEY, -- privacy.key_fingerprint of the database's key
    recorded_at                TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per file that could not be scored (unreadable, truncated, not an image, duplicate).
CREATE TABLE IF NOT EXISTS errors (
    error_id                   VARCHAR PRIMARY KEY, -- per path, content and error type: reruns add nothing
    run_id                     VARCHAR NOT NULL,
    source_path                VARCHAR NOT NULL,
    error_type                 VARCHAR NOT NULL,
    message                    VARCHAR,
    occurred_at                TIMESTAMP
);

-- The clinical cohort table (docs/reference/schema.md), loaded by `python -m epi_spineage.cohort load`.
-- participant_id holds the keyed hash, never the raw id. Extra columns are added on load.
CREATE TABLE IF NOT EXISTS cohort (
    participant_id              VARCHAR PRIMARY KEY,
    cohort                      VARCHAR NOT NULL,
    split                       VARCHAR,
    modality                    VARCHAR,
    age_years                   DOUBLE NOT NULL,
    sex                         VARCHAR NOT NULL,
    spine_age_years             DOUBLE,
    spine_age_corrected_years   DOUBLE,
    height_cm                   DOUBLE,
    weight_kg                   DOUBLE,
    bmi                         DOUBLE,
    diabetes                    INTEGER,
    prior_fracture              INTEGER,
    prevalent_vf                INTEGER,
    prosthesis                  INTEGER,
    glucocorticoid              INTEGER,
    rheumatoid_arthritis        INTEGER,
    tscore_lumbar               DOUBLE,
    tscore_femoral_neck         DOUBLE,
    tscore_total_hip            DOUBLE,
    osteoporosis                INTEGER,
    albumin_g_l                 DOUBLE,
    hemoglobin_g_dl             DOUBLE,
    creatinine_mg_dl            DOUBLE,
    fracture_any                INTEGER,
    fracture_vertebral          INTEGER,
    fracture_nonvertebral       INTEGER,
    fracture_hip                INTEGER,
    death                       INTEGER,
    fracture_any_years          DOUBLE,
    fracture_vertebral_years    DOUBLE,
    fracture_nonvertebral_years DOUBLE,
    fracture_hip_years          DOUBLE,
    death_years                 DOUBLE,
    frax_mof_pct                DOUBLE,
    frax_hip_pct                DOUBLE,
    frax_mof_spine_pct          DOUBLE,
    frax_hip_spine_pct          DOUBLE,
    key_fingerprint             VARCHAR
);

-- Frozen cut points, e.g. the PAD tertile from the derivation test set (docs/methods.md#accelerated).
-- cut_rule: '>=' (default, PAD >= c is accelerated) or '>' (Stata xtile's top bin); where it is NULL
-- (rows written by release 0.1.0) the views read the older column `comparison`.
CREATE TABLE IF NOT EXISTS cutpoints (
    name                       VARCHAR PRIMARY KEY,
    value                      DOUBLE NOT NULL,
    source_cohort              VARCHAR,
    method                     VARCHAR,
    comparison                 VARCHAR NOT NULL DEFAULT '>=',  -- release 0.1.0's rule column, kept
    created_at                 TIMESTAMP,
    cut_rule                   VARCHAR                         -- '>=' or '>'; views read coalesce(cut_rule, comparison)
);

-- Database-wide settings the plain-SQL views read (name -> value as text; schema version 2).
-- drift_min_count: v_drift flags a (model, run, manufacturer, month) cell only when it holds at least
-- this many images (docs/conventions.md#drift-min-count).
CREATE TABLE IF NOT EXISTS settings (
    name                       VARCHAR PRIMARY KEY,
    value                      VARCHAR NOT NULL,
    description                VARCHAR,
    updated_at                 TIMESTAMP
);
INSERT OR IGNORE INTO settings (name, value, description, updated_at) VALUES
    ('drift_min_count', '30', 'v_drift flags a cell only when it holds at least this many images',
     current_timestamp);

-- Per-manufacturer bias corrections (schema version 5; docs/methods.md#domain-shift): one row per
-- (model, manufacturer), fitted by `python -m epi_spineage.cohort bias-fit` on the calibration set the user
-- names; refitting a model replaces its rows. scope 'manufacturer': corrected = spine age - (alpha * age + beta)
-- with this manufacturer's own alpha and beta; scope 'pooled': fewer than min_images calibration images, so
-- the model's pooled correction (models.metadata_json) applies and alpha/beta are NULL. v_cohort_scores
-- applies these rows (spine_age_corrected_by_manufacturer_years) and leaves calibration participants NULL.
CREATE TABLE IF NOT EXISTS bias_corrections (
    model_id                   VARCHAR NOT NULL,
    manufacturer               VARCHAR NOT NULL,   -- as images.manufacturer; '(missing)' for images without one
    calibration_set            VARCHAR NOT NULL,   -- the name the user gave: COHORT or COHORT:SPLIT
    scope                      VARCHAR NOT NULL,   -- 'manufacturer' (own fit) or 'pooled' (too few images)
    method                     VARCHAR NOT NULL,   -- 'beheshti'
    alpha                      DOUBLE,             -- slope of PAD on age; NULL where scope = 'pooled'
    beta                       DOUBLE,             -- intercept; NULL where scope = 'pooled'
    n_images                   INTEGER NOT NULL,   -- calibration pairs of this manufacturer
    min_images                 INTEGER NOT NULL,   -- the fewest pairs a manufacturer's own fit needs
    fit_ids                    VARCHAR[],          -- keyed hashes of this manufacturer's calibration participants
    data_hash                  VARCHAR,            -- bias.data_hash of the fitted (age, spine age) pairs
    note                       VARCHAR,
    fitted_at                  TIMESTAMP NOT NULL,
    package_version            VARCHAR,
    PRIMARY KEY (model_id, manufacturer)
);
