import numpy as np
import pandas as pd
import pytest

from epi_spineage.model.evaluation import age_metrics


def test_metrics_per_split_and_modality_match_direct_formulas():
    rng = np.random.default_rng(4)
    n = 120
    df = pd.DataFrame(
        {
            "split": np.repeat(["val", "test"], n // 2),
            "modality": np.tile(["radiograph", "vfa"], n // 2),
            "age_years": rng.uniform(40, 90, n),
        }
    )
    df["spine_age_years"] = df["age_years"] + rng.normal(1.0, 4.0, n)
    out = age_metrics(df)
    assert set(out["modality"]) == {"all", "radiograph", "vfa"} and len(out) == 6
    g = df[(df.split == "test") & (df.modality == "vfa")]
    row = out[(out.split == "test") & (out.modality == "vfa")].iloc[0]
    pad = g.spine_age_years - g.age_years
    assert row.n == len(g)
    assert row.mae_years == pytest.approx(np.abs(pad).mean())
    assert row.rmse_years == pytest.approx(np.sqrt((pad**2).mean()))
    assert row.pearson_r == pytest.approx(np.corrcoef(g.age_years, g.spine_age_years)[0, 1])
    assert row.pad_mean_years == pytest.approx(pad.mean())
    assert row.pad_sd_years == pytest.approx(pad.std(ddof=1))
    assert np.isnan(row.coverage90)
