"""age_gap_regression drops aliased terms as R's lm does, fits the rest and lists them (issue 11 item 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import age_gap_regression


def _df(n=150, seed=4):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age_years": rng.uniform(50, 90, n),
            "sex": rng.choice(["F", "M"], n),
            "fn_tscore_dec": rng.normal(0, 1, n),
            "prosthesis": rng.integers(0, 2, n),
            "diabetes": rng.integers(0, 2, n),
        }
    )
    df["pad_years"] = 0.1 * df["age_years"] + 0.8 * df["fn_tscore_dec"] + rng.normal(0, 3, n)
    return df


def test_constant_prosthesis_in_the_complete_cases_is_dropped_not_the_whole_model():
    df = _df()
    # seen in a real cohort: prosthesis is 0 wherever the femoral-neck T-score is measured
    df.loc[df["prosthesis"] == 1, "fn_tscore_dec"] = np.nan
    covs = ["age_years", "sex", "fn_tscore_dec", "prosthesis"]
    with pytest.warns(UserWarning, match="prosthesis"):
        res = age_gap_regression(df, covariates=covs)
    assert res.dropped_terms == ("prosthesis",)
    assert res.note == "dropped (constant in the complete cases): prosthesis"
    c = res.coefficients.set_index("term")
    assert c.loc["prosthesis", ["estimate", "std_error", "ci_low", "ci_high"]].isna().all()
    assert c.loc["prosthesis", "note"] == "dropped (constant in the complete cases)"
    rest = age_gap_regression(df, covariates=covs[:3])
    assert rest.dropped_terms == () and rest.note is None and rest.coefficients["note"].isna().all()
    r = rest.coefficients.set_index("term")
    cols = ["estimate", "std_error", "p_value"]
    np.testing.assert_allclose(c.loc[r.index, cols], r[cols], rtol=1e-10)
    assert res.n == rest.n and res.df_resid == rest.df_resid and res.adj_r2 == pytest.approx(rest.adj_r2)


def test_one_sex_and_a_linear_combination_are_listed():
    df = _df()
    df["sex"] = "F"
    df["both"] = df["prosthesis"] + df["diabetes"]  # aliased with the two before it
    with pytest.warns(UserWarning):
        res = age_gap_regression(df, covariates=["age_years", "sex", "prosthesis", "diabetes", "both"])
    assert res.dropped_terms == ("sex", "both")
    c = res.coefficients.set_index("term")
    assert c.loc["sex", "note"].startswith("dropped (constant") and c.loc["both", "note"].startswith("dropped (aliased")
    assert "sex" in res.note and "both" in res.note
    assert np.isfinite(c.loc[["age_years", "prosthesis", "diabetes"], "estimate"]).all()


def test_alias_check_on_column_views_equals_the_copying_one():
    """_aliased hands qr a view of the leading columns while nothing is aliased (issue 18, memory): the same
    decisions as the copy of the kept columns, which it still takes after an aliased one."""
    import numpy as np

    from epi_spineage.stats.regression import _ALIAS_TOL, _aliased

    def reference(X):
        out = np.zeros(X.shape[1], dtype=bool)
        kept = [0]
        for j in range(1, X.shape[1]):
            x = X[:, j]
            q, _ = np.linalg.qr(X[:, kept])
            resid = x - q @ (q.T @ x)
            if np.linalg.norm(resid) <= _ALIAS_TOL * np.linalg.norm(x):
                out[j] = True
            else:
                kept.append(j)
        return out

    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(3000), rng.normal(size=(3000, 6))])
    X[:, 3] = X[:, 1] - 2 * X[:, 2]  # aliased with earlier columns
    X[:, 5] = 4.0  # constant: aliased with the intercept
    np.testing.assert_array_equal(_aliased(X), reference(X))
    assert _aliased(X).tolist() == [False, False, False, True, False, True, False]
