-- Version 5: per-manufacturer bias corrections, stored with the model they correct (docs/methods.md#domain-shift).
-- One row per (model, manufacturer), written by `python -m epi_spineage.cohort bias-fit`; refitting a model
-- replaces all of its rows. v_cohort_scores applies them (spine_age_corrected_by_manufacturer_years) and the
-- report reads that column when the study config says bias_correction = "per_manufacturer".
CREATE TABLE IF NOT EXISTS bias_corrections (
    model_id                   VARCHAR NOT NULL,
    manufacturer               VARCHAR NOT NULL,
    calibration_set            VARCHAR NOT NULL,
    scope                      VARCHAR NOT NULL,
    method                     VARCHAR NOT NULL,
    alpha                      DOUBLE,
    beta                       DOUBLE,
    n_images                   INTEGER NOT NULL,
    min_images                 INTEGER NOT NULL,
    fit_ids                    VARCHAR[],
    data_hash                  VARCHAR,
    note                       VARCHAR,
    fitted_at                  TIMESTAMP NOT NULL,
    package_version            VARCHAR,
    PRIMARY KEY (model_id, manufacturer)
);
