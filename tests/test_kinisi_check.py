"""kinisi (an independent, published estimator) beside ours on the same trajectory."""

import pytest

from localcond.labels.conductivity import Settings, accumulate, analyse
from synthetic import bound_pairs, brownian

pytest.importorskip("kinisi", reason="kinisi is installed by scripts/setup_env.sh")


def test_kinisi_agrees_with_einstein_helfand(tmp_path):
    from localcond.labels.kinisi_check import kinisi_molar_conductivity

    path = brownian(tmp_path / "k.dump", 20, 400, 0.05, 0.5, seed=2)
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_window_ps=(20.0, 60.0))
    ours = analyse(accumulate([path], settings), settings)["molar_conductivity"]
    theirs = kinisi_molar_conductivity(path, 2.0, 298.0, start_ps=20.0, max_lag_ps=60.0, lag_stride=2)
    assert theirs["unit"] == "S cm^2 mol^-1"
    combined = (ours["stderr"] ** 2 + (2 * theirs["stderr"]) ** 2) ** 0.5  # kinisi's error is ~2x small
    assert abs(theirs["value"] - ours["value"]) < 3 * combined, (theirs, ours)


def test_kinisi_sees_bound_pairs_as_non_conducting(tmp_path):
    """Charge signs matter: neutral pairs moving together give Λ ≈ 0 in kinisi too
    (an unsigned displacement sum would give about Λ_NE)."""
    from localcond.labels.kinisi_check import kinisi_molar_conductivity


    path = bound_pairs(tmp_path / "p.dump", 20, 400, 0.05, 0.5, seed=4)
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=20.0)
    ne = analyse(accumulate([path], settings), settings)["nernst_einstein"]["value"]
    theirs = kinisi_molar_conductivity(path, 2.0, 298.0, start_ps=20.0, max_lag_ps=60.0, lag_stride=2)
    assert abs(theirs["value"]) < 0.05 * ne, (theirs, ne)
