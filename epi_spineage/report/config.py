"""The study configuration: which cohort plays which role, covariate sets, outcomes and thresholds.

Read from a TOML file (``--config``; ``examples/study.toml`` documents every key). Unknown keys are
refused so that a typo does not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epi_spineage.errors import UserError
from epi_spineage.stats.cox import MODEL_COVARIATES
from epi_spineage.stats.imputation import DEFAULT_M, DEFAULT_SEED
from epi_spineage.stats.regression import DEFAULT_AGE_GAP_COVARIATES

#: a cohort with more analysed rows than this gets ``mi_imputations_large`` imputed sets (docs/guides/report.md)
MI_LARGE_N = 20_000

#: Model name -> covariates besides PAD per SD: the study's sets, from the stats layer (one definition).
DEFAULT_FRACTURE_MODELS: dict[str, list[str]] = {k: list(v) for k, v in MODEL_COVARIATES["fracture"].items()}
DEFAULT_MORTALITY_MODELS: dict[str, list[str]] = {k: list(v) for k, v in MODEL_COVARIATES["mortality"].items()}
DEFAULT_REGRESSION_COVARIATES = list(DEFAULT_AGE_GAP_COVARIATES)
#: the values of ``[bias] correction``
BIAS_CORRECTIONS = ("pooled", "per_manufacturer")
DEFAULT_TABLE1_VARIABLES = [
    "age_years",
    "spine_age_years",
    "female",
    "bmi",
    "prior_fracture",
    "prevalent_vf",
    "prosthesis",
    "glucocorticoid",
    "rheumatoid_arthritis",
    "tscore_lumbar",
    "tscore_femoral_neck",
    "tscore_total_hip",
    "osteoporosis",
]


@dataclass
class StudyConfig:
    """Everything the report's analyses can be told. Defaults reproduce the published study design."""

    #: value of the ``cohort`` column for each role
    derivation: str = "derivation"
    external: str = "external"
    #: rows of the derivation cohort that are analysed (the held-out test set); "" = all rows
    derivation_split: str = "test"
    #: which PAD each role uses: "auto" (corrected when spine_age_corrected_years is present),
    #: "corrected" or "uncorrected"
    pad_derivation: str = "uncorrected"
    pad_external: str = "auto"
    #: accelerated ageing: top tertile of PAD learned on the derivation (test) set, frozen
    tertile_method: str = "type7"
    #: accelerated = PAD >= cut (">=", default) or PAD > cut (">", as Stata's xtile bins)
    cut_rule: str = ">="
    fixed_cut_years: float | None = None
    #: survival conventions
    ties: str = "efron"
    km_ci: str = "log-log"
    km_times_years: list[float] = field(default_factory=lambda: [0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    ci_level: float = 0.95
    #: a Cox fit with fewer events per model parameter is "not estimable" (docs/methods.md#epv); None = off
    min_events_per_parameter: float | None = 5.0
    #: outcomes: the fracture outcomes of Table 2, mortality, the KM/competing-risk outcome
    fracture_outcomes: list[str] = field(
        default_factory=lambda: ["fracture_any", "fracture_vertebral", "fracture_nonvertebral"]
    )
    mortality_outcome: str = "death"
    km_outcome: str = "fracture_any"
    fracture_models: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FRACTURE_MODELS.items()}
    )
    mortality_models: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MORTALITY_MODELS.items()}
    )
    regression_covariates: list[str] = field(default_factory=lambda: list(DEFAULT_REGRESSION_COVARIATES))
    table1_variables: list[str] = field(default_factory=lambda: list(DEFAULT_TABLE1_VARIABLES))
    #: FRAX high-risk thresholds (NOF / Cosman 2014)
    frax_mof_threshold_pct: float = 20.0
    frax_hip_threshold_pct: float = 3.0
    #: scoring QC: minimum images in a month x manufacturer cell before drift is flagged; None = the database's
    drift_min_count: int | None = None
    #: competing risk: Fine-Gray subdistribution HRs beside the cause-specific and ordinary Cox HRs
    fine_gray: bool = True
    #: missing covariates: models refitted after multiple imputation (docs/methods.md#multiple-imputation)
    multiple_imputation: bool = True
    mi_imputations: int = DEFAULT_M
    #: imputed sets in a cohort of more than MI_LARGE_N analysed rows (stated in the report; = mi_imputations
    #: keeps m everywhere), and chained-equation cycles per set
    mi_imputations_large: int = 5
    mi_iterations: int = 10
    mi_seed: int = DEFAULT_SEED
    #: which bias correction gives spine_age_corrected_years when spine ages come from --db:
    #: "pooled" (the model's one line for every scanner) or "per_manufacturer" (the lines fitted on
    #: ``bias_calibration_set`` by ``cohort bias-fit`` and stored with the model; docs/methods.md#domain-shift)
    bias_correction: str = "pooled"
    #: the calibration set the per-manufacturer lines were fitted on: "COHORT" or "COHORT:SPLIT"
    bias_calibration_set: str | None = None
    #: title shown on the report
    title: str = "Spine age and incident fracture and mortality"
    #: processes for the analysis steps: "auto" (min(2, usable cores)) or a whole number >= 1; 1 runs them one
    #: after another in this process (docs/guides/registry-scale.md#two-cores). The results do not depend on it.
    jobs: int | str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def accelerated_rule(self) -> str:
        """Deprecated name of ``cut_rule`` (kept so that code written against 0.1 keeps working)."""
        warnings.warn("StudyConfig.accelerated_rule is deprecated; use cut_rule", DeprecationWarning, stacklevel=2)
        return self.cut_rule

    def validate(self) -> StudyConfig:
        if self.pad_derivation not in ("auto", "corrected", "uncorrected") or self.pad_external not in (
            "auto",
            "corrected",
            "uncorrected",
        ):
            raise UserError("config: pad_derivation/pad_external must be auto, corrected or uncorrected")
        if self.tertile_method not in ("type7", "type2"):
            raise UserError(f"config: tertile_method must be type7 or type2, not {self.tertile_method!r}")
        if self.cut_rule not in (">=", ">"):
            raise UserError(f"config: cut_rule must be '>=' or '>', not {self.cut_rule!r}")
        epp = self.min_events_per_parameter
        if epp is not None and (isinstance(epp, bool) or not isinstance(epp, (int, float)) or epp < 0):
            raise UserError("config: [survival] min_events_per_parameter must be a number >= 0 (0 = off)")
        dmc = self.drift_min_count
        if dmc is not None and (isinstance(dmc, bool) or not isinstance(dmc, int) or dmc < 1):
            raise UserError("config: [scoring] drift_min_count must be a whole number >= 1")
        for key in ("fine_gray", "multiple_imputation"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"config: [sensitivity] {key} must be true or false")
        for key, low in (("mi_imputations", 2), ("mi_imputations_large", 2), ("mi_iterations", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise UserError(f"config: [sensitivity] {key} must be a whole number >= {low}")
        if isinstance(self.mi_seed, bool) or not isinstance(self.mi_seed, int) or self.mi_seed < 0:
            raise UserError("config: [sensitivity] mi_seed must be a whole number >= 0")
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise UserError(
                f"config: [bias] correction must be one of {', '.join(BIAS_CORRECTIONS)}, not {self.bias_correction!r}"
            )
        cal = self.bias_calibration_set
        if cal is not None and (not isinstance(cal, str) or not cal.strip()):
            raise UserError(
                "config: [bias] calibration_set names a cohort or cohort:split, e.g. 'external:calibration'"
            )
        if self.bias_correction == "per_manufacturer" and cal is None:
            raise UserError(
                'config: [bias] correction = "per_manufacturer" needs calibration_set (the set the lines were '
                "fitted on with `cohort bias-fit --calibration-set`)"
            )
        self.jobs = parse_jobs(self.jobs, "config: [report] jobs")
        if self.ties not in ("efron", "breslow"):
            raise UserError(f"config: ties must be efron or breslow, not {self.ties!r}")
        if self.km_ci not in ("log-log", "log"):
            raise UserError(f"config: km_ci must be log-log or log, not {self.km_ci!r}")
        if not 0 < self.ci_level < 1:
            raise UserError("config: ci_level must be between 0 and 1")
        if abs(self.ci_level - 0.95) > 1e-12:
            # The statistics take any level, but the report's captions, headers and figure labels say
            # "95%": refuse rather than print a 90% interval under a 95% label.
            raise UserError(
                "config: the report supports ci_level = 0.95 only (its tables and figures are "
                "labelled 95%); call epi_spineage.stats directly for other levels"
            )
        if not self.fracture_models or not self.fracture_outcomes:
            raise UserError("config: at least one fracture model and outcome are needed")
        if sorted(self.km_times_years) != list(self.km_times_years) or any(t < 0 for t in self.km_times_years):
            raise UserError("config: km_times_years must be increasing and non-negative")
        return self


def parse_jobs(value: object, what: str = "--jobs") -> int | str:
    """``jobs`` as given (TOML, ``--jobs``): "auto" or a whole number >= 1; anything else is a ``UserError``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f'{what} must be a whole number >= 1 or "auto", not {value!r}')
    return value


def resolve_jobs(jobs: int | str) -> int:
    """The processes ``jobs`` asks for: "auto" is min(2, the cores this process may run on)."""
    if jobs != "auto":
        return int(jobs)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


# TOML layout: [cohorts], [pad], [grouping], [survival], [outcomes], [models.fracture],
# [models.mortality], [regression], [table1], [frax], [sensitivity], [report], [scoring], [bias]; each key maps
# to one field.
_SECTIONS: dict[str, dict[str, str]] = {
    "cohorts": {"derivation": "derivation", "external": "external", "derivation_split": "derivation_split"},
    "pad": {"derivation": "pad_derivation", "external": "pad_external"},
    "grouping": {"tertile_method": "tertile_method", "cut_rule": "cut_rule", "fixed_cut_years": "fixed_cut_years"},
    "survival": {
        "ties": "ties",
        "km_ci": "km_ci",
        "km_times_years": "km_times_years",
        "ci_level": "ci_level",
        "min_events_per_parameter": "min_events_per_parameter",
    },
    "outcomes": {"fracture": "fracture_outcomes", "mortality": "mortality_outcome", "km": "km_outcome"},
    "regression": {"covariates": "regression_covariates"},
    "table1": {"variables": "table1_variables"},
    "frax": {"mof_threshold_pct": "frax_mof_threshold_pct", "hip_threshold_pct": "frax_hip_threshold_pct"},
    "report": {"title": "title", "jobs": "jobs"},
    "scoring": {"drift_min_count": "drift_min_count"},
    "sensitivity": {
        "fine_gray": "fine_gray",
        "multiple_imputation": "multiple_imputation",
        "mi_imputations": "mi_imputations",
        "mi_imputations_large": "mi_imputations_large",
        "mi_iterations": "mi_iterations",
        "mi_seed": "mi_seed",
    },
    "bias": {"correction": "bias_correction", "calibration_set": "bias_calibration_set"},
}
#: old TOML keys that still work, with a DeprecationWarning: (section, old key) -> new key
_DEPRECATED_KEYS = {("grouping", "accelerated_rule"): "cut_rule"}


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> StudyConfig:
    """Build a validated ``StudyConfig`` from the nested TOML dictionary."""
    cfg = StudyConfig()
    for section, body in data.items():
        if section == "models":
            if not isinstance(body, dict):
                raise UserError(f"{source}: [models] must be a table")
            for family, models in body.items():
                if family not in ("fracture", "mortality"):
                    raise UserError(f"{source}: unknown model family [models.{family}] (fracture, mortality)")
                if not isinstance(models, dict) or not all(
                    isinstance(v, list) and all(isinstance(c, str) for c in v) for v in models.values()
                ):
                    raise UserError(f"{source}: [models.{family}] maps model names to lists of column names")
                setattr(cfg, f"{family}_models", {str(k): list(v) for k, v in models.items()})
            continue
        keys = _SECTIONS.get(section)
        if keys is None or not isinstance(body, dict):
            raise UserError(f"{source}: unknown section [{section}]; known: {', '.join([*_SECTIONS, 'models'])}")
        for key, value in body.items():
            if (section, key) in _DEPRECATED_KEYS:
                new = _DEPRECATED_KEYS[(section, key)]
                if new in body:
                    raise UserError(f"{source}: [{section}] has both {key!r} (deprecated) and {new!r}; keep {new!r}")
                warnings.warn(
                    f"{source}: [{section}] {key} is deprecated; call it {new}", DeprecationWarning, stacklevel=2
                )
                key = new
            attr = keys.get(key)
            if attr is None:
                raise UserError(f"{source}: unknown key {key!r} in [{section}]; known: {', '.join(keys)}")
            default = getattr(StudyConfig(), attr)
            if isinstance(default, list) and not isinstance(value, list):
                raise UserError(f"{source}: [{section}] {key} must be a list")
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if attr == "min_events_per_parameter" and value == 0:
                value = None  # 0 turns the rule off
            setattr(cfg, attr, value)
    return cfg.validate()


def load_config(path: str | Path | None) -> StudyConfig:
    """Read a study config TOML; ``None`` gives the defaults."""
    if path is None:
        return StudyConfig().validate()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(data, source=str(path))


# ---------------------------------------------------------------- the config back as TOML
#: fields whose None is written as another value that reads back as None (0 turns the EPV rule off)
_NONE_AS: dict[str, Any] = {"min_events_per_parameter": 0}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_LINE = 100


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _toml_line(key: str, value: Any) -> str:
    line = f"{_toml_key(key)} = {_toml_value(value)}"
    if len(line) <= _TOML_LINE or not isinstance(value, (list, tuple)):
        return line
    rows, row = [], ""
    for item in (f"{_toml_value(v)}," for v in value):  # filled rows of items, as examples/study.toml
        if row and len(row) + 1 + len(item) > _TOML_LINE - 4:
            rows.append(row)
            row = ""
        row = f"{row} {item}" if row else item
    rows.append(row)
    return "\n".join([f"{_toml_key(key)} = [", *(f"    {r}" for r in rows), "]"])


def config_rows(cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(section, key, value as TOML) for every setting of ``cfg``, as ``config_to_toml`` writes them
    (an unset value is ""); the models as ``models.fracture`` / ``models.mortality`` rows."""
    rows = []
    for section, keys in _SECTIONS.items():
        for key, attr in keys.items():
            value = getattr(cfg, attr)
            if value is None and attr in _NONE_AS:
                value = _NONE_AS[attr]
            rows.append((section, key, "" if value is None else _toml_value(value)))
    for family in ("fracture", "mortality"):
        for name, covs in getattr(cfg, f"{family}_models").items():
            rows.append((f"models.{family}", name, _toml_value(covs)))
    return rows


def config_to_toml(cfg: StudyConfig) -> str:
    """``cfg`` as a study-config TOML file, complete: every setting, defaults included.

    Reading it back (``config_from_dict(tomllib.loads(text))``) gives ``cfg`` again. A setting that is
    unset (None, where the default is None) is shown as a comment, since TOML has no null.
    """
    lines: list[str] = []
    for section, keys in _SECTIONS.items():
        body = []
        for key, attr in keys.items():
            value = getattr(cfg, attr)
            if value is None and attr in _NONE_AS:
                value = _NONE_AS[attr]
            body.append(f"# {_toml_key(key)} = (not set)" if value is None else _toml_line(key, value))
        lines += [f"[{section}]", *body, ""]
    for family in ("fracture", "mortality"):
        models = getattr(cfg, f"{family}_models")
        lines += [f"[models.{family}]", *(_toml_line(name, covs) for name, covs in models.items()), ""]
    return "\n".join(lines).rstrip() + "\n"
