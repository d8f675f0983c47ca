import subprocess
import sys

import numpy as np
import pytest

from epi_spineage.errors import UserError
from epi_spineage.model.bias import BiasCorrection, hash_ids
from epi_spineage.privacy import pseudonymise

KEY = b"unit-test-key-0123456789"


def _data(n=400, slope=-0.35, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 95, n)
    pred = age + slope * (age - 65) + 1.5 + rng.normal(0, 2.0, n)
    return age, pred


def test_beheshti_recovers_known_slope_and_removes_age_trend():
    age, pred = _data()
    bc = BiasCorrection().fit(age, pred, ids=[f"P{i}" for i in range(age.size)], key=KEY)
    assert bc.alpha_ == pytest.approx(-0.35, abs=0.03)
    assert bc.beta_ == pytest.approx(0.35 * 65 + 1.5, abs=2.0)
    assert abs(bc.corr_pad_age_) < 1e-9
    # new participants from the same process: corrected PAD no longer trends with age
    age2, pred2 = _data(seed=1)
    corrected = bc.apply(age2, pred2, ids=[f"Q{i}" for i in range(age2.size)], key=KEY)
    raw_slope = np.polyfit(age2, pred2 - age2, 1)[0]
    new_slope = np.polyfit(age2, corrected - age2, 1)[0]
    assert raw_slope < -0.25 and abs(new_slope) < 0.05
    np.testing.assert_allclose(corrected, pred2 - (bc.alpha_ * age2 + bc.beta_))


def test_refuses_overlapping_ids_and_the_fitting_data():
    age, pred = _data()
    ids = [f"P{i}" for i in range(age.size)]
    bc = BiasCorrection().fit(age, pred, ids=ids, key=KEY)
    with pytest.raises(UserError, match="fitted on"):
        bc.apply(age, pred)  # same data, no ids: refused by data hash
    with pytest.raises(UserError, match="fitted on"):
        bc.apply(age[::-1], pred[::-1])  # the same rows in another order are the same data
    age2, pred2 = _data(n=10, seed=5)
    with pytest.raises(UserError, match="1 of 10"):
        bc.apply(age2, pred2, ids=[f"Q{i}" for i in range(9)] + ["P3"], key=KEY)
    # ids that arrive already pseudonymised with the same key are recognised too
    hashed = [pseudonymise(f"P{i}", KEY) for i in range(10)]
    with pytest.raises(UserError, match="leakage"):
        bc.apply(age2, pred2, ids=hashed)
    # another key: refused, because the overlap check would be meaningless
    with pytest.raises(UserError, match="key differs"):
        bc.apply(age2, pred2, ids=[f"Q{i}" for i in range(10)], key=b"another-key-0123456789")
    ok = bc.apply(age2, pred2, ids=[f"Q{i}" for i in range(10)], key=KEY)
    assert ok.shape == (10,)


def test_raw_ids_need_a_key(monkeypatch):
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)
    age, pred = _data(n=20)
    with pytest.raises(UserError, match="key"):
        BiasCorrection().fit(age, pred, ids=[f"P{i}" for i in range(20)])
    hashed, fp = hash_ids([pseudonymise("x", KEY)])
    assert fp is None and hashed[0].startswith("p_")


def test_round_trip_and_zhang():
    age, pred = _data(n=600)
    bc = BiasCorrection().fit(age, pred, ids=[f"P{i}" for i in range(600)], key=KEY)
    again = BiasCorrection.from_dict(bc.to_dict())
    age2, pred2 = _data(n=50, seed=9)
    with pytest.warns(UserWarning, match="no ids"):
        np.testing.assert_allclose(again.apply(age2, pred2), bc.apply(age2, pred2))
    with pytest.raises(UserError):
        again.apply(age, pred)  # the data hash travels with the parameters
    z = BiasCorrection("zhang", min_count=10).fit(age, pred)
    assert set(z.levels_) == set(range(int(np.floor(age.min())), int(np.floor(age.max())) + 1))
    zc = z.apply(age2, pred2) - age2
    assert abs(np.polyfit(age2, zc, 1)[0]) < 0.1
    z2 = BiasCorrection.from_dict(z.to_dict())
    np.testing.assert_allclose(z2.apply(age2, pred2), z.apply(age2, pred2))


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError):
        BiasCorrection("cole")
    with pytest.raises(UserError):
        BiasCorrection().fit([50, 60], [55, 61, 70])
    with pytest.raises(UserError):
        BiasCorrection().apply([50], [55])  # not fitted


def test_import_is_torch_free():
    code = (
        "import sys; from epi_spineage.model import BiasCorrection; import epi_spineage.model.calibration; "
        "from epi_spineage.model.bias import beheshti_correct; import epi_spineage.tables.cohort; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
