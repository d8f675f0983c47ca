"""One lazy-export helper (``epi_spineage._lazy``) for every package; importing a package stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("epi_spineage.model", "epi_spineage.stats", "epi_spineage.score", "epi_spineage.synth")


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_names_are_listed_and_unknown_names_raise(package):
    mod = importlib.import_module(package)
    assert set(mod._EXPORTS) <= set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        mod.no_such_name  # noqa: B018


def test_names_resolve_to_their_modules_and_are_cached():
    import epi_spineage.stats as stats
    from epi_spineage.stats.grouping import accelerated

    assert stats.accelerated is accelerated and stats.__dict__["accelerated"] is accelerated
    pytest.importorskip("pydicom")
    import epi_spineage.synth as synth
    from epi_spineage.synth.archive import write_phantom_archive

    assert synth.write_phantom_archive is write_phantom_archive


def test_importing_packages_does_not_import_torch():
    code = (
        "import sys; import epi_spineage, epi_spineage.stats, epi_spineage.report, epi_spineage.model, "
        "epi_spineage.score, epi_spineage.synth; from epi_spineage.model import BiasCorrection; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
