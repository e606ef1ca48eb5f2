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


def test_segment_fits_combine_without_the_inverse_variance_bias():
    """Fits whose posterior error grows with their value (σ = 0.2 × value): weighting by
    1/σ² favours low fits and is biased low by several %; the plain mean is unbiased and
    its error is the scatter / √n."""
    import numpy as np

    from localcond.labels.kinisi_check import combine_segments

    rng = np.random.default_rng(1)
    plain, weighted = [], []
    for _ in range(400):
        values = rng.normal(100.0, 20.0, size=8)
        parts = [{"value": v, "stderr": 0.2 * v, "unit": "S cm^2 mol^-1"} for v in values]
        combined = combine_segments(parts + [None, {"error": "kinisi failed"}])
        assert combined["n_parts"] == 8 and combined["n_failed"] == 2
        assert combined["stderr"] == pytest.approx(values.std(ddof=1) / np.sqrt(8))
        plain.append(combined["value"])
        w = 1 / (0.2 * values) ** 2
        weighted.append((w * values).sum() / w.sum())
    assert abs(np.mean(plain) - 100.0) < 1.0
    assert np.mean(weighted) < 96.0
