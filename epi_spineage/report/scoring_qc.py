"""The scoring-QC section for ``--db``: runs, errors, score distributions, drift and domain shift.

Reads through ``inputs.open_db`` (read-only attach + the package's SQL views). Drift comes from
``epi_spineage.score.drift.drift_summary`` when that module is installed, else from ``v_drift``.
Domain shift (docs/methods.md#domain-shift): agreement per manufacturer and modality from the view
``v_agreement_by_manufacturer``, and ``stats.pad_shift_test`` (PAD by manufacturer adjusted for age
and sex) on uncorrected PAD and on PAD after the configured bias correction; one aggregate query and
one OLS per model, linear in the number of scored participants.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class ScoringQC:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: some stored paths are raw (scored with --store-paths): they may carry identifiers (docs/privacy.md)
    raw_paths_stored: bool = False
    #: model ids whose checkpoint quality verdict is "weak" (saved with --allow-weak-model)
    weak_models: list[str] = field(default_factory=list)
    #: runs whose predictions have near-zero spread: run_id, model_id, n, sd_years
    flat_runs: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["run_id", "model_id", "n", "sd_years"])
    )
    #: the minimum images per cell before v_drift/drift_summary may flag it (docs/conventions.md#drift-min-count)
    drift_min_count: int | None = None
    #: the bias correction the report applied ("pooled" or "per_manufacturer") and its calibration set
    bias_correction: str = "pooled"
    bias_calibration_set: str | None = None
    #: one sentence per model on the adjusted test of a PAD shift between manufacturers
    shift_readings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "tables": self.tables,
            "notes": self.notes,
            "weak_models": self.weak_models,
            "flat_runs": self.flat_runs,
            "drift_min_count": self.drift_min_count,
            "raw_paths_stored": self.raw_paths_stored,
            "bias_correction": self.bias_correction,
            "bias_calibration_set": self.bias_calibration_set,
            "shift_readings": self.shift_readings,
        }


def _query(con, sql: str) -> pd.DataFrame:
    try:
        return con.execute(sql).df()
    except Exception as exc:  # an older database may lack a column; the section says so
        log.info("scoring QC query failed: %s", exc)
        return pd.DataFrame()


def scoring_qc(
    db_path: str,
    drift_min_count: int | None = None,
    *,
    bias_correction: str = "pooled",
    bias_calibration_set: str | None = None,
) -> ScoringQC:
    """The scoring-QC tables; ``drift_min_count`` overrides the database's setting (None: use it, default 30).

    ``bias_correction``: the correction the report applies ("pooled" or "per_manufacturer"): the shift
    test is repeated on PAD after it.
    """
    from epi_spineage.report.inputs import open_db

    con = open_db(db_path)
    qc = ScoringQC(bias_correction=bias_correction, bias_calibration_set=bias_calibration_set)
    try:
        _weak_and_flat(con, qc)
        qc.tables["qc_runs"] = _query(
            con,
            """
            SELECT run_id, status, model_id, device, started_at, finished_at, n_seen, n_scored,
                   n_skipped_known, n_not_spine, n_duplicates
            FROM runs ORDER BY started_at""",
        )
        qc.tables["qc_errors"] = _query(
            con,
            """
            SELECT error_type, count(*) AS n FROM errors GROUP BY error_type ORDER BY n DESC""",
        )
        qc.tables["qc_scores"] = _query(
            con,
            """
            SELECT s.model_id, coalesce(i.modality, '(unknown)') AS modality,
                   coalesce(i.manufacturer, s.manufacturer, '(unknown)') AS manufacturer,
                   count(*) AS n, avg(s.spine_age_years) AS mean_spine_age_years,
                   stddev_samp(s.spine_age_years) AS sd_spine_age_years,
                   avg(s.spine_age_sd_years) AS mean_prediction_sd_years
            FROM scores AS s LEFT JOIN images AS i ON i.source_path = s.source_path
            GROUP BY ALL ORDER BY ALL""",
        )
        qc.tables["qc_linkage"] = _query(
            con,
            """
            SELECT (SELECT count(*) FROM cohort) AS cohort_rows,
                   (SELECT count(DISTINCT participant_id) FROM v_cohort_scores) AS with_score,
                   (SELECT count(*) FROM scores) AS scores,
                   (SELECT count(*) FROM images) AS images""",
        )
        raw = _query(
            con,
            """
            SELECT count(*) AS n FROM (
                SELECT source_path FROM images UNION ALL SELECT source_path FROM scores
                UNION ALL SELECT source_path FROM errors)
            WHERE NOT regexp_full_match(source_path, 'h_[0-9a-f]{32}')""",
        )
        qc.raw_paths_stored = bool(len(raw) and int(raw["n"].iloc[0]) > 0)
        drift = None
        try:
            from epi_spineage.score.drift import drift_summary

            qc.drift_min_count = drift_min_count
            drift = drift_summary(con, min_count=drift_min_count)
            qc.drift_min_count = int(drift["drift_min_count"].iloc[0]) if len(drift) else drift_min_count
        except ImportError:
            qc.notes.append("drift from the v_drift view (epi_spineage.score.drift not installed)")
        except Exception as exc:
            qc.notes.append(f"drift_summary failed ({type(exc).__name__}); showing the v_drift view")
        if drift is None:
            drift = _query(con, "SELECT * FROM v_drift ORDER BY model_id, study_month, manufacturer")
        qc.tables["qc_drift"] = drift if isinstance(drift, pd.DataFrame) else pd.DataFrame(drift)
        _domain_shift(con, qc)
    finally:
        con.close()
    return qc


#: PAD columns of v_cohort_scores the shift test reads, by what they hold
_SHIFT_PADS = {
    "uncorrected": "pad_raw_years",
    "pooled": "pad_corrected_years",
    "per_manufacturer": "pad_corrected_by_manufacturer_years",
}
_SHIFT_LABEL = {
    "uncorrected": "uncorrected PAD",
    "pooled": "PAD after the pooled correction",
    "per_manufacturer": "PAD after the per-manufacturer correction",
}


def _domain_shift(con, qc: ScoringQC) -> None:
    """Agreement per manufacturer and modality (the SQL view) and the adjusted PAD-shift test per model."""
    from epi_spineage.errors import UserError
    from epi_spineage.stats import pad_shift_test

    qc.tables["qc_agreement"] = _query(con, "SELECT * FROM v_agreement_by_manufacturer")
    rows = _query(
        con,
        f"""
        SELECT model_id, manufacturer, age_years, sex, {", ".join(_SHIFT_PADS.values())}
        FROM v_cohort_scores WHERE manufacturer IS NOT NULL""",
    )
    if not len(rows):
        return
    out = []
    for model_id, block in rows.groupby("model_id", sort=True):
        for kind in ("uncorrected", qc.bias_correction):
            column = _SHIFT_PADS[kind]
            if block[column].notna().sum() < 3:
                continue
            try:
                res = pad_shift_test(block, "manufacturer", ("age_years", "sex"), pad=column)
            except UserError as exc:
                if kind == "uncorrected":
                    qc.notes.append(f"Model {model_id}: no test of a PAD shift between manufacturers ({exc}).")
                break
            res.insert(0, "pad", _SHIFT_LABEL[kind])
            res.insert(0, "model_id", model_id)
            out.append(res)
            qc.shift_readings.append(shift_reading(res, model_id, _SHIFT_LABEL[kind]))
    if out:
        qc.tables["qc_pad_shift"] = pd.concat(out, ignore_index=True)


def shift_reading(res: pd.DataFrame, model_id: object, what: str) -> str:
    """One sentence reading a ``pad_shift_test`` result."""
    f = res.iloc[0]
    test = (
        f"F = {f['statistic']:.2f} on {int(f['df_num'])} and {int(f['df_den'])} df, "
        f"p = {_p(f['p_value'])}, n = {int(f['n']):,}"
    )
    terms = res.iloc[1:]
    if f["p_value"] < 0.05 and len(terms):
        big = terms.loc[terms["estimate"].abs().idxmax()]
        return (
            f"Model {model_id}, {what}: differs between manufacturers after adjusting for age and sex ({test}); "
            f"largest adjusted difference {big['level']} vs {f['reference']}: {big['estimate']:+.2f} y "
            f"(95% CI {big['ci_low']:+.2f} to {big['ci_high']:+.2f})."
        )
    return (
        f"Model {model_id}, {what}: no evidence of a difference between manufacturers after adjusting for "
        f"age and sex ({test})."
    )


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _weak_and_flat(con, qc: ScoringQC) -> None:
    """Weak models (checkpoint quality verdict, stored in models.metadata_json) and flat runs (issue 11)."""
    weak = _query(
        con,
        """
        SELECT model_id FROM models
        WHERE json_extract_string(metadata_json, '$.quality.verdict') = 'weak' ORDER BY model_id""",
    )
    qc.weak_models = [str(m) for m in weak.get("model_id", [])]
    import duckdb

    try:
        from epi_spineage.score.drift import flat_runs

        qc.flat_runs = flat_runs(con)
    except (ImportError, duckdb.Error) as exc:  # an older database may lack a column
        log.info("flat-run query failed: %s", exc)
    if qc.weak_models:
        qc.notes.append(f"WEAK MODEL(S) scored: {', '.join(qc.weak_models)} (saved with --allow-weak-model)")
    if len(qc.flat_runs):
        qc.notes.append(
            f"{len(qc.flat_runs)} run(s) with near-zero spread of predictions (flat model): "
            + ", ".join(qc.flat_runs["run_id"].astype(str))
        )
