"""The pseudonymisation key is resolved once, by the tool (``cli/common.resolve_key``), and passed down.

Library functions given ``key=`` use it and never consult the environment; without one they refuse with
the same one-line message the tools print.
"""

from __future__ import annotations

import pandas as pd
import pytest

from epi_spineage.cli.common import resolve_key
from epi_spineage.errors import UserError
from epi_spineage.privacy import (
    NO_KEY_MESSAGE,
    PSEUDONYM_PATTERN,
    is_pseudonym,
    load_key,
    pseudonymise,
    require_key,
)

ARG_KEY = b"the-argument-key-0123456789"
ENV_KEY = "the-environment-key-0123456789"


@pytest.fixture
def env_key(monkeypatch):
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", ENV_KEY)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)


@pytest.fixture
def no_env_key(monkeypatch):
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)


def test_resolve_key_order(tmp_path, monkeypatch, env_key):
    key_file = tmp_path / "key"
    key_file.write_text("  the-file-key-0123456789\n")
    env_file = tmp_path / "env-key"
    env_file.write_text("the-env-file-key-0123456789")
    assert resolve_key(key_file) == b"the-file-key-0123456789"  # --key-file first
    assert resolve_key() == ENV_KEY.encode()
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", str(env_file))
    assert resolve_key() == b"the-env-file-key-0123456789"  # the file variable before the key variable
    assert load_key() == resolve_key()  # the thin public function resolves as the tools do
    assert load_key(ARG_KEY) == ARG_KEY


def test_resolve_key_refuses_without_a_key(tmp_path, no_env_key):
    with pytest.raises(UserError) as err:
        resolve_key()
    assert str(err.value) == NO_KEY_MESSAGE
    assert resolve_key(required=False) is None
    with pytest.raises(UserError, match="not found"):
        resolve_key(tmp_path / "missing")
    with pytest.raises(UserError, match="too short"):
        require_key(b"short")


def test_require_key_never_reads_the_environment(env_key):
    assert require_key(ARG_KEY) == ARG_KEY
    with pytest.raises(UserError, match="no pseudonymisation key"):
        require_key()


def test_bias_ids_use_the_argument_not_the_environment(env_key):
    from epi_spineage.model.bias import hash_ids

    hashed, fingerprint = hash_ids(["P1", "P2"], key=ARG_KEY)
    assert hashed == [pseudonymise("P1", ARG_KEY), pseudonymise("P2", ARG_KEY)]
    assert hashed[0] != pseudonymise("P1", ENV_KEY.encode())
    with pytest.raises(UserError, match="no pseudonymisation key"):
        hash_ids(["P1"])  # the environment's key does not stand in


def test_report_join_uses_the_argument_not_the_environment(env_key):
    from epi_spineage.report.inputs import _merge_db_scores

    df = pd.DataFrame({"participant_id": ["A", "B", pseudonymise("C", ARG_KEY)], "spine_age_years": [50.0, 51.0, 52.0]})
    scores = pd.DataFrame(
        {
            "participant_id": [pseudonymise("A", ARG_KEY), pseudonymise("C", ARG_KEY)],
            "spine_age_years": [70.0, 72.0],
            "spine_age_corrected_years": [69.0, 71.0],
        }
    )
    merged, hits = _merge_db_scores(df, scores, ARG_KEY)
    assert hits == 2 and merged["spine_age_years"].tolist() == [70.0, 51.0, 72.0]
    with pytest.raises(UserError, match="no pseudonymisation key"):
        _merge_db_scores(df, scores, None)
    # ids that are already pseudonyms need no key
    merged, hits = _merge_db_scores(df.iloc[[2]], scores, None)
    assert hits == 1


def test_training_key_is_decided_by_the_tool(tmp_path, no_env_key):
    from epi_spineage.cli.train import _training_key
    from epi_spineage.privacy import DEMO_KEY

    assert _training_key(None, synthetic=True) == DEMO_KEY
    with pytest.raises(UserError, match="scorer's key"):
        _training_key(None, synthetic=False)
    key_file = tmp_path / "key"
    key_file.write_bytes(ARG_KEY)
    assert _training_key(str(key_file), synthetic=True) == ARG_KEY


def test_cohort_load_takes_key_file(tmp_path, no_env_key, capsys):
    from epi_spineage.cli import cohort

    csv = tmp_path / "c.csv"
    csv.write_text("participant_id,cohort,age_years,sex\nP1,derivation,60,F\n")
    db = tmp_path / "c.duckdb"
    assert cohort.main(["load", str(csv), "--db", str(db)]) == 2
    assert "no pseudonymisation key" in capsys.readouterr().err
    key_file = tmp_path / "key"
    key_file.write_bytes(ARG_KEY)
    assert cohort.main(["load", str(csv), "--db", str(db), "--key-file", str(key_file)]) == 0
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = [r[0] for r in con.execute("SELECT participant_id FROM cohort").fetchall()]
    finally:
        con.close()
    assert ids == [pseudonymise("P1", ARG_KEY)]


def test_one_pseudonym_definition():
    p = pseudonymise("HOSP03000009", ARG_KEY)
    assert is_pseudonym(p) and PSEUDONYM_PATTERN == r"p_[0-9a-f]{24}"
    for value in ("HOSP03000009", p.upper(), p + "0", p[:-1], None, 12, " " + p):
        assert not is_pseudonym(value)
