"""Shared fixtures for the synth tests: one default-size study, simulated once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def study():
    from epi_spineage.synth import simulate_study

    return simulate_study(seed=2025)
