"""The scoring-QC section for ``--db``: runs, errors, score distributions and drift.

Reads through ``inputs.open_db`` (read-only attach + the package's SQL views). Drift comes from
``epi_spineage.score.drift.drift_summary`` when that module is installed, else from ``v_drift``.
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

    def to_json(self) -> dict:
        return {
            "tables": self.tables,
            "notes": self.notes,
            "weak_models": self.weak_models,
            "flat_runs": self.flat_runs,
            "drift_min_count": self.drift_min_count,
            "raw_paths_stored": self.raw_paths_stored,
        }


def _query(con, sql: str) -> pd.DataFrame:
    try:
        return con.execute(sql).df()
    except Exception as exc:  # an older database may lack a column; the section says so
        log.info("scoring QC query failed: %s", exc)
        return pd.DataFrame()


def scoring_qc(db_path: str, drift_min_count: int | None = None) -> ScoringQC:
    """The scoring-QC tables; ``drift_min_count`` overrides the database's setting (None: use it, default 30)."""
    from epi_spineage.report.inputs import open_db

    con = open_db(db_path)
    qc = ScoringQC()
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
    finally:
        con.close()
    return qc


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
