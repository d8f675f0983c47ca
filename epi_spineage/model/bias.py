"""Age-level bias correction of predicted age (docs/methods.md#bias-correction). Torch-free.

Brain- and spine-age models regress towards the mean: old people come out younger and young people
older, so the predicted-age difference (PAD = predicted - chronological age) correlates with age.
``BiasCorrection`` removes that trend using pairs the network never trained on (out-of-fold or
validation predictions), and is leakage-proof by construction: it records the keyed-hash ids and a hash
of the data it was fitted on and refuses to be applied to them, because on its own fitting rows the
corrected PAD is age-free by construction and every accuracy figure would be flattered.

Methods
-------
``"beheshti"`` (default; Beheshti 2019): OLS ``PAD = alpha * age + beta``;
``corrected = predicted - (alpha * age + beta)``.
``"zhang"`` (Zhang 2023, age level): ``corrected = predicted - mu_g`` where ``mu_g`` is the mean PAD
at integer age ``g = floor(age)`` in the fitting set; the window ``[g - h, g + h]`` widens while it holds
``min_count`` or fewer pairs. Ages outside the fitted range use the nearest fitted level.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from epi_spineage.errors import UserError

METHODS = ("beheshti", "zhang")
#: On its own fitting rows, a Beheshti fit leaves corr(PAD_c, age) at rounding level.
_BEHESHTI_CORR_TOL = 1e-6


def beheshti_correct(predicted_age, chronological_age, alpha: float, beta: float) -> np.ndarray:
    """The Beheshti correction, the one formula every caller uses (docs/methods.md#beheshti):
    ``corrected = predicted - (alpha * age + beta)``, with ``alpha, beta`` the OLS slope and intercept of
    PAD on age in the fitting data. Elementwise, float64; NaN stays NaN. ``sql/v_cohort_scores.sql``
    writes the same arithmetic (a test checks that they agree)."""
    pred = np.asarray(predicted_age, dtype="float64")
    age = np.asarray(chronological_age, dtype="float64")
    return pred - (float(alpha) * age + float(beta))


def data_hash(chronological_age, predicted_age) -> str:
    """SHA-256 of the (age, predicted age) pairs as float64, whatever their row order.

    Sorting first means the fitting rows shuffled (or read back in another order) still match.
    """
    age = np.asarray(chronological_age, dtype="float64").ravel()
    pred = np.asarray(predicted_age, dtype="float64").ravel()
    if age.shape == pred.shape:
        order = np.lexsort((pred, age))
        age, pred = age[order], pred[order]
    age, pred = np.ascontiguousarray(age), np.ascontiguousarray(pred)
    h = hashlib.sha256()
    h.update(str(age.shape).encode())
    h.update(age.tobytes())
    h.update(pred.tobytes())
    return h.hexdigest()


def hash_ids(ids: Iterable[object] | None, key: bytes | str | None = None) -> tuple[list[str] | None, str | None]:
    """Return ``(pseudonymised ids, key fingerprint)``.

    Ids that are already pseudonymised (``p_`` + 24 hex digits, as ``epi_spineage.privacy`` makes
    them) pass through unchanged and give no fingerprint. Raw ids need ``key`` (the scorer's key; the
    environment is never read here).
    """
    if ids is None:
        return None, None
    from epi_spineage.privacy import is_pseudonym, key_fingerprint, pseudonymise, require_key

    values = ["" if v is None else str(v).strip() for v in ids]
    if all(is_pseudonym(v) for v in values):
        return values, None
    raw_key = require_key(key)  # raises UserError when there is none
    return [pseudonymise(v, raw_key) for v in values], key_fingerprint(raw_key)


def _as_arrays(chronological_age, predicted_age) -> tuple[np.ndarray, np.ndarray]:
    age = np.asarray(chronological_age, dtype="float64").ravel()
    pred = np.asarray(predicted_age, dtype="float64").ravel()
    if age.shape != pred.shape:
        raise UserError(f"chronological and predicted age differ in length ({age.size} vs {pred.size})")
    if not (np.isfinite(age).all() and np.isfinite(pred).all()):
        raise UserError("chronological or predicted age has missing or non-finite values")
    return age, pred


class BiasCorrection:
    """Age-level bias correction; ``fit`` returns ``self``, fitted attributes end in ``_``.

    Parameters
    ----------
    method : ``"beheshti"`` (linear, default) or ``"zhang"`` (per integer age level).
    min_count : Zhang only: widen an age level's window while it holds this many pairs or fewer.
    source : free text saying which predictions the fit used, e.g. ``"oof-10fold"`` or
        ``"validation-fallback"``; stored with the parameters.

    Attributes (after ``fit``)
    --------------------------
    alpha_, beta_ : slope and intercept of PAD on age (Beheshti; for Zhang the same OLS is kept for
        reference). n_ : pairs used. corr_pad_age_ : corr(PAD_c, age) on the fitting data.
    levels_ : Zhang: ``{integer age: mean PAD}``. fit_ids_ : keyed-hash ids (or None).
    key_fingerprint_ : which key hashed them (None when ids came pseudonymised). data_hash_ : hash of
    the fitting pairs.
    """

    def __init__(self, method: str = "beheshti", *, min_count: int = 10, source: str | None = None):
        if method not in METHODS:
            raise UserError(f"unknown bias-correction method {method!r}; choose one of {', '.join(METHODS)}")
        if int(min_count) < 1:
            raise UserError("min_count must be at least 1")
        self.method = method
        self.min_count = int(min_count)
        self.source = source
        self.alpha_: float | None = None
        self.beta_: float | None = None
        self.n_: int | None = None
        self.corr_pad_age_: float | None = None
        self.levels_: dict[int, float] | None = None
        self.fit_ids_: list[str] | None = None
        self.key_fingerprint_: str | None = None
        self.data_hash_: str | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, chronological_age, predicted_age, ids: Sequence[object] | None = None, *, key=None) -> BiasCorrection:
        """Fit on out-of-fold (or validation) pairs. ``ids``: participant ids, raw (hashed with
        ``key``) or already pseudonymised."""
        age, pred = _as_arrays(chronological_age, predicted_age)
        if age.size < 3:
            raise UserError(f"bias correction needs at least 3 pairs, got {age.size}")
        if np.ptp(age) == 0:
            raise UserError("bias correction needs a spread of chronological ages (all ages are equal)")
        hashed, fingerprint = hash_ids(ids, key)
        if hashed is not None and len(hashed) != age.size:
            raise UserError(f"ids ({len(hashed)}) and ages ({age.size}) differ in length")
        pad = pred - age
        alpha, beta = np.polyfit(age, pad, 1)
        self.alpha_, self.beta_ = float(alpha), float(beta)
        self.n_ = int(age.size)
        if self.method == "zhang":
            self.levels_ = self._zhang_levels(age, pad)
        self.fit_ids_ = sorted(set(hashed)) if hashed is not None else None
        self.key_fingerprint_ = fingerprint
        self.data_hash_ = data_hash(age, pred)
        corrected_pad = self._correct(age, pred) - age
        self.corr_pad_age_ = float(np.corrcoef(corrected_pad, age)[0, 1]) if np.std(corrected_pad) > 0 else 0.0
        if self.method == "beheshti" and abs(self.corr_pad_age_) > _BEHESHTI_CORR_TOL:
            raise RuntimeError(f"bias correction fit check failed: corr(PAD_c, age) = {self.corr_pad_age_:.3g}")
        if self.method == "zhang" and abs(self.corr_pad_age_) > 0.05:
            warnings.warn(
                f"Zhang age-level correction leaves corr(PAD_c, age) = {self.corr_pad_age_:.3f} on its fitting "
                "data (levels are integer ages; small levels are pooled)",
                stacklevel=2,
            )
        return self

    def _zhang_levels(self, age: np.ndarray, pad: np.ndarray) -> dict[int, float]:
        level = np.floor(age).astype(int)
        levels: dict[int, float] = {}
        for g in range(int(level.min()), int(level.max()) + 1):
            h = 0
            while True:
                inside = np.abs(level - g) <= h
                if inside.sum() > self.min_count or inside.all():
                    break
                h += 1
            levels[g] = float(pad[inside].mean())
        return levels

    def _check_fitted(self) -> None:
        if self.alpha_ is None:
            raise UserError("this BiasCorrection is not fitted; call fit() or load one with from_dict()")

    def _correct(self, age: np.ndarray, pred: np.ndarray) -> np.ndarray:
        if self.method == "beheshti":
            assert self.alpha_ is not None and self.beta_ is not None  # _check_fitted ran
            return beheshti_correct(pred, age, self.alpha_, self.beta_)
        assert self.levels_ is not None, "a fitted Zhang correction has its age levels"
        keys = np.array(sorted(self.levels_), dtype=int)
        values = np.array([self.levels_[k] for k in keys])
        g = np.clip(np.floor(age).astype(int), keys.min(), keys.max())
        return pred - values[np.searchsorted(keys, g)]

    # ------------------------------------------------------------------ applying
    def apply(self, chronological_age, predicted_age, ids: Sequence[object] | None = None, *, key=None) -> np.ndarray:
        """Corrected predicted age (a new array: keep the uncorrected one beside it).

        Refuses rows whose keyed-hash ids overlap the fitting ids, and refuses data identical to the
        fitting pairs (by hash), because corrected accuracy on the fitting data is meaningless.
        """
        self._check_fitted()
        age, pred = _as_arrays(chronological_age, predicted_age)
        if self.data_hash_ is not None and data_hash(age, pred) == self.data_hash_:
            raise UserError(
                "refusing to apply bias correction to the data it was fitted on (same data hash); "
                "apply it to held-out or external rows only"
            )
        if ids is not None and self.fit_ids_:
            hashed, fingerprint = hash_ids(ids, key)
            assert hashed is not None  # ids is not None
            if fingerprint is not None and self.key_fingerprint_ is not None and fingerprint != self.key_fingerprint_:
                raise UserError(
                    "the pseudonymisation key differs from the one used when the bias correction was fitted "
                    f"(key {fingerprint} vs {self.key_fingerprint_}); use the scorer's key"
                )
            overlap = set(hashed) & set(self.fit_ids_)
            if overlap:
                raise UserError(
                    f"refusing to apply bias correction: {len(overlap)} of {len(hashed)} participant(s) were in "
                    "the data it was fitted on (leakage); remove them or fit on other participants"
                )
        elif self.fit_ids_ and ids is None:
            warnings.warn(
                "no ids given: bias correction cannot check these rows against its fitting data", stacklevel=2
            )
        return self._correct(age, pred)

    def pad_corrected(self, chronological_age, predicted_age, ids=None, *, key=None) -> np.ndarray:
        """Corrected PAD (``apply(...) - age``)."""
        age = np.asarray(chronological_age, dtype="float64").ravel()
        return self.apply(chronological_age, predicted_age, ids, key=key) - age

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-serialisable parameters (stored in the checkpoint's ``meta.json``)."""
        self._check_fitted()
        return {
            "method": self.method,
            "alpha": self.alpha_,
            "beta": self.beta_,
            "levels": None if self.levels_ is None else {str(k): v for k, v in self.levels_.items()},
            "min_count": self.min_count,
            "n": self.n_,
            "corr_pad_age": self.corr_pad_age_,
            "source": self.source,
            "fit_ids": self.fit_ids_,
            "key_fingerprint": self.key_fingerprint_,
            "data_hash": self.data_hash_,
            "formula": "corrected = predicted - (alpha * age + beta)"
            if self.method == "beheshti"
            else "corrected = predicted - levels[floor(age)] (nearest level outside the range)",
        }

    @classmethod
    def from_dict(cls, d: dict) -> BiasCorrection:
        try:
            obj = cls(d.get("method", "beheshti"), min_count=int(d.get("min_count", 10)), source=d.get("source"))
            obj.alpha_ = float(d["alpha"])
            obj.beta_ = float(d["beta"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"bad bias-correction parameters: {exc}") from None
        levels = d.get("levels")
        obj.levels_ = None if levels is None else {int(k): float(v) for k, v in levels.items()}
        if obj.method == "zhang" and not obj.levels_:
            raise UserError("bad bias-correction parameters: Zhang method without age levels")
        obj.n_ = d.get("n")
        obj.corr_pad_age_ = d.get("corr_pad_age")
        obj.fit_ids_ = d.get("fit_ids")
        obj.key_fingerprint_ = d.get("key_fingerprint")
        obj.data_hash_ = d.get("data_hash")
        return obj

    def __repr__(self) -> str:
        if self.alpha_ is None:
            return f"BiasCorrection(method={self.method!r}, unfitted)"
        return f"BiasCorrection(method={self.method!r}, alpha={self.alpha_:.4f}, beta={self.beta_:.3f}, n={self.n_})"


# ---------------------------------------------------------------------------------------------------------
# Per-manufacturer correction (docs/methods.md#domain-shift)

#: A manufacturer with fewer calibration pairs than this keeps the pooled correction (``min_images``).
DEFAULT_MIN_IMAGES = 30
#: The label of images without a manufacturer (as ``stats.agreement_by_group`` and the SQL views write it).
MISSING_MANUFACTURER = "(missing)"


def manufacturer_labels(manufacturer) -> np.ndarray:
    """Manufacturer names as text, a missing one as ``"(missing)"`` (the views' ``coalesce``)."""
    out = []
    for v in np.asarray(manufacturer, dtype=object).ravel():
        missing = v is None or (isinstance(v, float) and np.isnan(v)) or str(v) in ("", "<NA>", "nan")
        out.append(MISSING_MANUFACTURER if missing else str(v))
    return np.asarray(out, dtype=object)


class ManufacturerBiasCorrection:
    """One Beheshti correction per scanner manufacturer, fitted on a named calibration set.

    Images from another manufacturer can read older or younger by a constant and with another slope
    against age; a pooled correction leaves that offset in PAD. This fits ``PAD = alpha_m * age + beta_m``
    on the calibration pairs of each manufacturer ``m`` that has at least ``min_images`` of them. A
    manufacturer with fewer (or none) falls back to ``pooled`` (the model's own correction, what
    ``bias_correction = "pooled"`` applies), with a note; with no pooled correction either its corrected
    values are NaN, never a silent wrong number.

    As ``BiasCorrection``, it records the keyed-hash ids of every calibration participant and refuses to
    correct them (``apply``), because corrected accuracy on the fitting data is flattered.

    Parameters
    ----------
    calibration_set : the name of the calibration set (stored with the fits; ``COHORT`` or ``COHORT:SPLIT``
        for sets taken from the cohort table, as ``cohort bias-fit --calibration-set`` names them).
    pooled : the pooled ``BiasCorrection`` (or its dict) used for manufacturers without enough images.
    min_images : the fewest calibration pairs a manufacturer's own fit needs (default 30).
    """

    def __init__(self, calibration_set: str, *, pooled=None, min_images: int = DEFAULT_MIN_IMAGES):
        if not str(calibration_set).strip():
            raise UserError("name the calibration set (e.g. 'external:calibration')")
        if int(min_images) < 3:
            raise UserError("min_images must be at least 3 (a line needs 3 pairs to be checked)")
        if pooled is not None and not isinstance(pooled, BiasCorrection):
            pooled = BiasCorrection.from_dict(dict(pooled))
        self.calibration_set = str(calibration_set).strip()
        self.pooled = pooled
        self.min_images = int(min_images)
        self.fits_: dict[str, BiasCorrection] = {}
        self.n_images_: dict[str, int] = {}
        self.fit_ids_: dict[str, list[str]] = {}
        self.key_fingerprint_: str | None = None

    def fit(
        self, chronological_age, predicted_age, manufacturer, ids: Sequence[object] | None = None, *, key=None
    ) -> ManufacturerBiasCorrection:
        """Fit one line per manufacturer with at least ``min_images`` pairs; the others fall back."""
        age, pred = _as_arrays(chronological_age, predicted_age)
        man = manufacturer_labels(manufacturer)
        if man.size != age.size:
            raise UserError(f"manufacturer ({man.size}) and ages ({age.size}) differ in length")
        hashed, self.key_fingerprint_ = hash_ids(ids, key)
        if hashed is not None and len(hashed) != age.size:
            raise UserError(f"ids ({len(hashed)}) and ages ({age.size}) differ in length")
        self.fits_, self.n_images_, self.fit_ids_ = {}, {}, {}
        for m in sorted(set(man)):
            sel = man == m
            self.n_images_[m] = int(sel.sum())
            self.fit_ids_[m] = sorted(set(np.asarray(hashed, dtype=object)[sel])) if hashed is not None else []
            if sel.sum() >= self.min_images and np.ptp(age[sel]) > 0:
                source = f"calibration set {self.calibration_set}, {m} only"
                self.fits_[m] = BiasCorrection("beheshti", source=source).fit(age[sel], pred[sel])
        return self

    # ------------------------------------------------------------------ reading the fit
    def scope(self, manufacturer: str) -> str:
        """``"manufacturer"`` (its own fit) or ``"pooled"`` (too few calibration images: the pooled one)."""
        return "manufacturer" if manufacturer in self.fits_ else "pooled"

    @property
    def calibration_ids(self) -> set[str]:
        return {i for ids in self.fit_ids_.values() for i in ids}

    def notes(self) -> list[str]:
        """One line per manufacturer that falls back to the pooled correction (and why)."""
        out = []
        for m, n in sorted(self.n_images_.items()):
            if m in self.fits_:
                continue
            why = f"{n} calibration image(s), fewer than {self.min_images}" if n < self.min_images else "no age spread"
            tail = "the pooled correction is used" if self._pooled_line() else "no pooled correction: left missing"
            out.append(f"{m}: {why}; {tail}")
        return out

    def _pooled_line(self) -> tuple[float, float] | None:
        p = self.pooled
        if p is None or p.method != "beheshti" or p.alpha_ is None or p.beta_ is None:
            return None
        return p.alpha_, p.beta_

    # ------------------------------------------------------------------ applying
    def apply(
        self, chronological_age, predicted_age, manufacturer, ids: Sequence[object] | None = None, *, key=None
    ) -> np.ndarray:
        """Corrected predicted age, each row with its manufacturer's line (or the pooled one).

        Refuses rows whose participants are in the calibration set (as ``BiasCorrection.apply``); rows
        of a manufacturer that falls back are also refused when the pooled correction was fitted on them.
        Rows that have no correction to take (no pooled correction) are NaN.
        """
        age, pred = _as_arrays(chronological_age, predicted_age)
        man = manufacturer_labels(manufacturer)
        if man.size != age.size:
            raise UserError(f"manufacturer ({man.size}) and ages ({age.size}) differ in length")
        calibration = self.calibration_ids
        if ids is not None and calibration:
            hashed, fingerprint = hash_ids(ids, key)
            assert hashed is not None
            if fingerprint is not None and self.key_fingerprint_ is not None and fingerprint != self.key_fingerprint_:
                raise UserError(
                    "the pseudonymisation key differs from the one used when the calibration set was hashed "
                    f"(key {fingerprint} vs {self.key_fingerprint_}); use the scorer's key"
                )
            overlap = set(hashed) & calibration
            if overlap:
                raise UserError(
                    f"refusing to apply the per-manufacturer bias correction: {len(overlap)} of {len(hashed)} "
                    f"participant(s) are in its calibration set {self.calibration_set!r} (leakage); name a "
                    "calibration set that is not analysed"
                )
        elif calibration and ids is None:
            warnings.warn("no ids given: cannot check these rows against the calibration set", stacklevel=2)
        out = np.full(age.shape, np.nan)
        pooled = self._pooled_line()
        for m in sorted(set(man)):
            sel = man == m
            if m in self.fits_:
                fit = self.fits_[m]
                assert fit.alpha_ is not None and fit.beta_ is not None
                out[sel] = beheshti_correct(pred[sel], age[sel], fit.alpha_, fit.beta_)
            elif pooled is not None:
                assert self.pooled is not None
                if ids is not None and self.pooled.fit_ids_:
                    self.pooled.apply(age[sel], pred[sel], np.asarray(ids, dtype=object)[sel], key=key)  # refuses
                out[sel] = beheshti_correct(pred[sel], age[sel], *pooled)
        return out

    # ------------------------------------------------------------------ persistence (table bias_corrections)
    def to_rows(self, model_id: str) -> list[dict]:
        """The ``bias_corrections`` rows of this fit for ``model_id`` (schema version 5)."""
        from epi_spineage import __version__
        from epi_spineage.db.results import now_utc

        notes = {line.split(":", 1)[0]: line for line in self.notes()}
        rows = []
        for m, n in sorted(self.n_images_.items()):
            fit = self.fits_.get(m)
            rows.append(
                {
                    "model_id": str(model_id),
                    "manufacturer": m,
                    "calibration_set": self.calibration_set,
                    "scope": self.scope(m),
                    "method": "beheshti",
                    "alpha": None if fit is None else fit.alpha_,
                    "beta": None if fit is None else fit.beta_,
                    "n_images": int(n),
                    "min_images": self.min_images,
                    "fit_ids": list(self.fit_ids_.get(m, [])),
                    "data_hash": None if fit is None else fit.data_hash_,
                    "note": notes.get(m),
                    "fitted_at": now_utc(),
                    "package_version": __version__,
                }
            )
        return rows

    @classmethod
    def from_rows(cls, rows: Iterable[dict], *, pooled=None) -> ManufacturerBiasCorrection:
        """Rebuild from ``bias_corrections`` rows of one model (as ``to_rows`` wrote them)."""
        rows = list(rows)
        if not rows:
            raise UserError("no per-manufacturer bias corrections to read")
        sets = {str(r["calibration_set"]) for r in rows}
        if len(sets) != 1:
            raise UserError(f"per-manufacturer corrections of one model come from several calibration sets: {sets}")
        obj = cls(sets.pop(), pooled=pooled, min_images=int(rows[0]["min_images"]))
        for r in rows:
            m = str(r["manufacturer"])
            obj.n_images_[m] = int(r["n_images"])
            ids = r.get("fit_ids")
            obj.fit_ids_[m] = [] if ids is None else [str(i) for i in ids]
            if r["scope"] == "manufacturer":
                fit = BiasCorrection("beheshti", source=f"calibration set {obj.calibration_set}, {m} only")
                fit.alpha_, fit.beta_ = float(r["alpha"]), float(r["beta"])
                fit.n_, fit.data_hash_ = int(r["n_images"]), r.get("data_hash")
                obj.fits_[m] = fit
        return obj

    def __repr__(self) -> str:
        own = ", ".join(f"{m}: a={f.alpha_:.3f} b={f.beta_:.2f}" for m, f in self.fits_.items())
        return f"ManufacturerBiasCorrection({self.calibration_set!r}; {own or 'no own fits'})"
