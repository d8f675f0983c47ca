-- Agreement of spine age with age per model, manufacturer and modality (docs/methods.md#domain-shift):
-- plain aggregates over v_cohort_scores (each participant's baseline image), the numbers of
-- epi_spineage.stats.agreement_by_group (tests/stats/test_stats_domain_sql.py checks that they agree).
-- n: participants with PAD; PAD = spine age - age (uncorrected); pad_mean_se_years = SD / sqrt(n);
-- mae_years = mean |PAD|; pearson_r of spine age with age (n >= 3) with its 95% Fisher-z interval
-- tanh(atanh(r) -/+ 1.959963984540054 / sqrt(n - 3)) (n >= 4; R cor.test). The mean corrected PADs show
-- what the pooled and the per-manufacturer corrections leave (calibration and fit participants excluded).
-- A missing manufacturer or modality is labelled '(missing)', as in Python.
CREATE OR REPLACE VIEW v_agreement_by_manufacturer AS
WITH rows_ AS (
    SELECT
        model_id,
        coalesce(manufacturer, '(missing)') AS manufacturer,
        coalesce(modality, '(missing)') AS modality,
        age_years,
        spine_age_years,
        pad_raw_years,
        pad_corrected_years,
        pad_corrected_by_manufacturer_years
    FROM v_cohort_scores
),

agg AS (
    SELECT
        model_id,
        manufacturer,
        modality,
        count(pad_raw_years) AS n,
        count(*) - count(pad_raw_years) AS n_missing,
        avg(pad_raw_years) AS pad_mean_years,
        CASE WHEN count(pad_raw_years) >= 2 THEN stddev_samp(pad_raw_years) END AS pad_sd_years,
        avg(abs(pad_raw_years)) AS mae_years,
        CASE WHEN count(pad_raw_years) >= 3 THEN corr(spine_age_years, age_years) END AS pearson_r,
        avg(pad_corrected_years) AS pad_corrected_mean_years,
        avg(pad_corrected_by_manufacturer_years) AS pad_corrected_by_manufacturer_mean_years
    FROM rows_
    GROUP BY model_id, manufacturer, modality
)

SELECT
    model_id,
    manufacturer,
    modality,
    n,
    n_missing,
    pad_mean_years,
    pad_sd_years,
    pad_sd_years / sqrt(n) AS pad_mean_se_years,
    mae_years,
    pearson_r,
    CASE WHEN n >= 4 AND abs(pearson_r) < 1
        THEN tanh(atanh(pearson_r) - 1.959963984540054 / sqrt(n - 3)) END AS r_ci_low,
    CASE WHEN n >= 4 AND abs(pearson_r) < 1
        THEN tanh(atanh(pearson_r) + 1.959963984540054 / sqrt(n - 3)) END AS r_ci_high,
    0.95 AS ci_level,
    pad_corrected_mean_years,
    pad_corrected_by_manufacturer_mean_years
FROM agg
ORDER BY model_id, manufacturer, modality;
