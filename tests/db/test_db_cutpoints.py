"""Cut points in the database: the one way v_accelerated gets its flags (save, read, CLI, lock)."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from epi_spineage.db.cutpoints import read_cutpoints, save_cutpoint
from epi_spineage.db.schema import apply_schema
from epi_spineage.errors import UserError
from tests.db.conftest import V1_KEY


def _flags(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT round(pad_years, 9), pad_cut_years, accelerated FROM v_accelerated "
            "WHERE pad_years IS NOT NULL ORDER BY 1"
        ).fetchall()
    finally:
        con.close()


def test_flags_are_null_until_a_cut_point_is_saved_then_follow_it(v1_db):
    con = duckdb.connect(str(v1_db))
    apply_schema(con, key=V1_KEY)
    con.close()
    rows = _flags(v1_db)
    assert len(rows) > 3 and all(flag is None for _, _, flag in rows)  # the defect of issue 11 item 10
    middle = rows[len(rows) // 2][0]
    save_cutpoint(v1_db, name="pad_tertile_years", value_years=middle, source_cohort="derivation", method="test")
    rows = _flags(v1_db)
    assert all(flag == (pad >= middle) for pad, _, flag in rows) and any(f for *_, f in rows)
    save_cutpoint(v1_db, name="pad_tertile_years", value_years=middle, cut_rule=">", method="test")  # replaces
    rows = _flags(v1_db)
    assert all(flag == (pad > middle) for pad, _, flag in rows)
    df = read_cutpoints(v1_db)
    assert df.to_dict("records")[0] | {"created_at": None} == {
        "name": "pad_tertile_years",
        "value_years": middle,
        "cut_rule": ">",
        "source_cohort": None,
        "method": "test",
        "created_at": None,
        "used_by_views": True,
    }


def test_bad_cut_points_are_user_errors(tmp_path):
    db = tmp_path / "new.duckdb"
    for kwargs, match in (
        ({"value_years": float("nan")}, "finite"),
        ({"value_years": 1.0, "cut_rule": "=<"}, "rule"),
        ({"value_years": "old"}, "number"),
    ):
        with pytest.raises(UserError, match=match):
            save_cutpoint(db, name="pad_tertile_years", method="t", **kwargs)
    with pytest.raises(UserError, match="folder not found"):
        save_cutpoint(tmp_path / "no" / "x.duckdb", name="pad_tertile_years", value_years=1.0, method="t")


def test_a_busy_database_is_waited_for_then_refused_in_one_line(tmp_path):
    db = tmp_path / "busy.duckdb"
    save_cutpoint(db, name="pad_tertile_years", value_years=1.0, method="t")
    code = f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('open', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        t0 = time.monotonic()
        with pytest.raises(UserError, match="locked by"):
            save_cutpoint(db, name="pad_tertile_years", value_years=2.0, method="t", lock_timeout_s=0.5)
        assert time.monotonic() - t0 >= 0.5
    finally:
        holder.kill()
        holder.wait()
    assert read_cutpoints(db).value_years.tolist() == [1.0]


def test_cohort_cutpoints_command(tmp_path, capsys):
    from epi_spineage.cli.cohort import main

    db = tmp_path / "spine.duckdb"
    assert (
        main(
            [
                "cutpoints",
                "set",
                "--db",
                str(db),
                "--name",
                "pad_corrected_tertile_years",
                "--value",
                "-1.25",
                "--cut-rule",
                ">",
                "--source-cohort",
                "derivation",
                "--method",
                "tertile",
            ]
        )
        == 0
    )
    assert "pad_corrected_tertile_years = -1.25 years, rule PAD > cut" in capsys.readouterr().out
    assert main(["cutpoints", "show", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "pad_corrected_tertile_years" in out and "derivation" in out and "tertile" in out
    assert main(["cutpoints", "set", "--db", str(db), "--name", "x", "--value", "inf"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["cutpoints", "show", "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "database not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error: one line, exit 2
        main(["cutpoints", "set", "--db", str(db), "--name", "x", "--value", "1", "--cut-rule", "<"])
    assert exc.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
