"""Recovery of the planted HRs per SD of PAD: each is the true HR conditional on the covariates that
generate the outcome, so fitting exactly that Cox model must give it back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.synth.cohort import DERIVATION, EXTERNAL, simulate_cohort

from ._cox import cox_breslow, design


def _fit_cases(spec, outcome, n, seed):
    rng = np.random.default_rng(seed)
    df, truth = simulate_cohort(spec, n, rng)
    t = truth["outcomes"][outcome]
    cov = list(t["covariates"])
    df = df.dropna(subset=[c for c in cov if c in df.columns])  # complete cases (MCAR missingness)
    return df, t, cov


def test_own_cox_matches_lifelines():
    from lifelines import CoxPHFitter

    df, t, cov = _fit_cases(DERIVATION, "fracture_any", 4000, 99)
    x = design(df, cov)
    beta, se = cox_breslow(df["fracture_any_years"], df["fracture_any"], x)
    frame = pd.DataFrame(x, columns=cov).assign(T=df["fracture_any_years"].to_numpy(), E=df["fracture_any"].to_numpy())
    ll = CoxPHFitter().fit(frame, "T", "E")
    np.testing.assert_allclose(beta, ll.params_.to_numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(se, ll.standard_errors_.to_numpy(), rtol=1e-3)


@pytest.mark.parametrize(
    "spec,outcome",
    [(DERIVATION, "fracture_any"), (EXTERNAL, "fracture_any"), (DERIVATION, "fracture_vertebral"), (EXTERNAL, "death")],
)
def test_mean_log_hr_over_10_seeds_within_3_mc_se(spec, outcome):
    """lifelines CoxPHFitter on the generating covariates; the mean of 10 log-HRs per SD vs the truth."""
    from lifelines import CoxPHFitter

    ests = []
    for seed in range(10):
        df, t, cov = _fit_cases(spec, outcome, 6000, 1000 + seed)
        ev, tm = outcome, outcome + "_years"
        frame = pd.DataFrame(design(df, cov), columns=cov).assign(T=df[tm].to_numpy(), E=df[ev].to_numpy())
        fit = CoxPHFitter().fit(frame, "T", "E")
        ests.append(fit.params_["pad_years"] * t["pad_sd_population"])  # log-HR per population SD
    ests = np.array(ests)
    mc_se = ests.std(ddof=1) / np.sqrt(len(ests))
    assert abs(ests.mean() - t["log_hr_per_sd_pad"]) < 3 * mc_se, (ests.mean(), t["log_hr_per_sd_pad"], mc_se)


@pytest.mark.slow
@pytest.mark.parametrize("spec,outcome", [(DERIVATION, "fracture_any"), (EXTERNAL, "death")])
def test_ci_coverage_100_seeds_n20000(spec, outcome):
    """95% Wald CIs of the PAD log-HR cover the planted value in 90-99 of 100 cohorts of 20,000."""
    covered = 0
    for seed in range(100):
        df, t, cov = _fit_cases(spec, outcome, 20_000, 5000 + seed)
        beta, se = cox_breslow(df[outcome + "_years"], df[outcome], design(df, cov))
        truth = t["log_hr_per_year_pad"]
        covered += int(beta[0] - 1.959964 * se[0] <= truth <= beta[0] + 1.959964 * se[0])
    assert 90 <= covered <= 99, covered
