"""The one definition of the shared names: cohort columns, image manifest, tools and tables.

Everything here is the shared vocabulary (docs/reference/schema.md); other modules import these constants instead of
repeating column names. Add names freely; never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Shown on every output made from the built-in simulator.
SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA: every number and image here comes from epi_spineage's simulator and phantoms, "
    "not from patients. Nothing in it is a clinical finding."
)

MIN_AGE_YEARS = 40
DEFAULT_MAX_AGE_YEARS = 100

COHORT_ROLES = ("derivation", "external")
SPLITS = ("train", "val", "test")
MODALITIES = ("radiograph", "vfa")
SEX_CODES = ("F", "M")


@dataclass(frozen=True)
class Column:
    """One cohort column. ``kind`` is ``str``, ``float`` or ``binary`` (0/1 integer)."""

    name: str
    kind: str
    required: bool
    description: str
    allowed: tuple[str, ...] | None = None
    valid_range: tuple[float, float] | None = None


COHORT_COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "str", True, "unique within the table"),
    Column("cohort", "str", True, "cohort role, e.g. derivation or external"),
    Column("split", "str", False, "train / val / test (derivation); empty elsewhere", SPLITS),
    Column("modality", "str", False, "radiograph or vfa", MODALITIES),
    Column("age_years", "float", True, "chronological age at the index image", None, (0, 120)),
    Column("sex", "str", True, "F or M", SEX_CODES),
    Column("spine_age_years", "float", False, "model prediction (expectation), uncorrected", None, (0, 150)),
    Column("spine_age_corrected_years", "float", False, "after bias correction", None, (-50, 200)),
    Column("height_cm", "float", False, "height", None, (100, 230)),
    Column("weight_kg", "float", False, "weight", None, (20, 250)),
    Column("bmi", "float", False, "body-mass index, kg/m^2 (derived when missing)", None, (10, 70)),
    Column("diabetes", "binary", False, "diabetes mellitus"),
    Column("prior_fracture", "binary", False, "previous clinical fracture"),
    Column("prevalent_vf", "binary", False, "prevalent morphometric vertebral fracture"),
    Column("prosthesis", "binary", False, "surgical prosthesis in the spine"),
    Column("glucocorticoid", "binary", False, "chronic glucocorticoid use"),
    Column("rheumatoid_arthritis", "binary", False, "rheumatoid arthritis"),
    Column("tscore_lumbar", "float", False, "DXA T-score, lumbar spine", None, (-8, 8)),
    Column("tscore_femoral_neck", "float", False, "DXA T-score, femoral neck", None, (-8, 8)),
    Column("tscore_total_hip", "float", False, "DXA T-score, total hip", None, (-8, 8)),
    Column("osteoporosis", "binary", False, "derived: min available T-score <= -2.5"),
    Column("albumin_g_l", "float", False, "serum albumin", None, (5, 80)),
    Column("hemoglobin_g_dl", "float", False, "haemoglobin", None, (2, 25)),
    Column("creatinine_mg_dl", "float", False, "serum creatinine", None, (0.05, 25)),
    Column("fracture_any", "binary", False, "incident fracture, any site"),
    Column("fracture_vertebral", "binary", False, "incident vertebral fracture"),
    Column("fracture_nonvertebral", "binary", False, "incident non-vertebral fracture"),
    Column("fracture_hip", "binary", False, "incident hip fracture"),
    Column("death", "binary", False, "death"),
    Column("fracture_any_years", "float", False, "time to event or censoring (> 0)", None, (0, 100)),
    Column("fracture_vertebral_years", "float", False, "time to event or censoring (> 0)", None, (0, 100)),
    Column("fracture_nonvertebral_years", "float", False, "time to event or censoring (> 0)", None, (0, 100)),
    Column("fracture_hip_years", "float", False, "time to event or censoring (> 0)", None, (0, 100)),
    Column("death_years", "float", False, "time to event or censoring (> 0)", None, (0, 100)),
    Column("frax_mof_pct", "float", False, "FRAX 10-y MOF probability (%), chronological age", None, (0, 100)),
    Column("frax_hip_pct", "float", False, "FRAX 10-y hip probability (%), chronological age", None, (0, 100)),
    Column("frax_mof_spine_pct", "float", False, "FRAX MOF (%), spine age in place of age", None, (0, 100)),
    Column("frax_hip_spine_pct", "float", False, "FRAX hip (%), spine age in place of age", None, (0, 100)),
)

COHORT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COHORT_COLUMNS)
REQUIRED_COHORT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COHORT_COLUMNS if c.required)
BINARY_COLUMNS: tuple[str, ...] = tuple(c.name for c in COHORT_COLUMNS if c.kind == "binary")
COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in COHORT_COLUMNS}

#: Outcome name -> (event column, time column).
OUTCOMES: dict[str, tuple[str, str]] = {
    "fracture_any": ("fracture_any", "fracture_any_years"),
    "fracture_vertebral": ("fracture_vertebral", "fracture_vertebral_years"),
    "fracture_nonvertebral": ("fracture_nonvertebral", "fracture_nonvertebral_years"),
    "fracture_hip": ("fracture_hip", "fracture_hip_years"),
    "death": ("death", "death_years"),
}

TSCORE_COLUMNS = ("tscore_lumbar", "tscore_femoral_neck", "tscore_total_hip")

#: Derived, never stored by users.
PAD_COLUMN = "pad_years"
#: PAD is rounded to this before comparison with a cut point (docs/conventions.md#cut-rule).
PAD_ROUNDING_YEARS = 1e-9

# Image manifest (one row per image).
MANIFEST_COLUMNS = ("image", "participant_id", "age_years", "modality", "split")
REQUIRED_MANIFEST_COLUMNS = ("image", "participant_id", "age_years", "modality")
#: Separates an archive path from a member path in the manifest's ``image`` column.
ARCHIVE_MEMBER_SEPARATOR = "::"

# Tools: python -m epi_spineage.<tool> and `epi-spineage <tool>`.
TOOLS = (
    "synth",
    "preprocess",
    "train",
    "predict",
    "explain",
    "score",
    "ingest",
    "cohort",
    "frax",
    "report",
    "demo",
)

# DuckDB tables (sql/schema.sql).
DB_TABLES = ("images", "scores", "runs", "errors", "models", "cohort", "cutpoints", "settings", "bias_corrections")

#: Environment variable holding the pseudonymisation key (or use a key file).
PSEUDONYM_KEY_ENV = "EPI_SPINEAGE_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "EPI_SPINEAGE_PSEUDONYM_KEY_FILE"
