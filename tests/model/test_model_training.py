import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from epi_spineage.errors import UserError  # noqa: E402
from epi_spineage.model import MeanVarianceLoss, build_model  # noqa: E402
from epi_spineage.model.data import assign_splits, participant_folds, read_manifest  # noqa: E402


def test_a_few_steps_make_the_loss_fall():
    torch.manual_seed(0)
    net = build_model("mobilenetv3_small_050")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = MeanVarianceLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 64, 32, generator=g)
    ages = 40 + 60 * torch.rand(8, generator=g)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = loss_fn(net(x), ages)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_participant_split_never_shares_a_participant():
    df = pd.DataFrame(
        {
            "image": [f"i{i}" for i in range(300)],
            "participant_id": [f"P{i // 3}" for i in range(300)],
            "age_years": np.linspace(40, 90, 300),
            "modality": "radiograph",
        }
    )
    out = assign_splits(df, seed=3)
    assert (out.groupby("participant_id")["split"].nunique() == 1).all()
    share = out.drop_duplicates("participant_id")["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.6, abs=0.02) and share["test"] == pytest.approx(0.2, abs=0.02)
    assert assign_splits(df, seed=3)["split"].tolist() == out["split"].tolist()
    assert assign_splits(df, seed=4)["split"].tolist() != out["split"].tolist()
    bad = df.assign(split=["train", "val", "test"] * 100)  # each participant in three splits
    with pytest.raises(UserError, match="more than one split"):
        assign_splits(bad)
    folds = participant_folds(df["participant_id"], 10)
    assert pd.DataFrame({"p": df["participant_id"], "f": folds}).groupby("p")["f"].nunique().max() == 1
    assert set(folds) == set(range(10))


def test_manifest_problems_are_user_errors(tmp_path):
    (tmp_path / "m.csv").write_text("image,participant_id,age_years\na.png,P1,50\n")
    with pytest.raises(UserError, match="modality"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("image,participant_id,age_years,modality\na.png,P1,old,radiograph\n")
    with pytest.raises(UserError, match="age_years"):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(UserError, match="not found"):
        read_manifest(tmp_path / "none.csv")
