"""Per-ion labels: exact identities with Einstein-Helfand and Nernst-Einstein,
truncated labels against a brute-force minimum-image sum, the NPZ dataset."""

import json
import subprocess
import sys

import numpy as np
import pytest

from localcond.campaign.labels.conductivity import Settings, accumulate, analyse
from localcond.campaign.labels.per_ion import LabelSettings, compute_labels
from localcond.units import molar_conductivity_prefactor
from synthetic import brownian

T = 298.0


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    return brownian(tmp_path_factory.mktemp("traj") / "t.dump", 25, 120, 0.05, 0.5, seed=11,
                    box=20.0)


def conductivity(path, **kwargs):
    settings = Settings(timestep_fs=2.0, temperature_k=T, **kwargs)
    return analyse(accumulate([path], settings), settings)


def test_mean_of_exact_labels_is_einstein_helfand(trajectory):
    _, arrays, meta = compute_labels(trajectory, LabelSettings(2.0, T, tau_ps=5.0))
    summary = conductivity(trajectory, tau_ps=5.0)
    assert arrays["exact"].shape == (120 - 10, 50)
    assert arrays["exact"].mean() == pytest.approx(summary["molar_conductivity"]["value"], rel=1e-10)
    assert meta["tau_ps"] == 5.0


def test_self_only_truncation_is_nernst_einstein(trajectory):
    """With R below every interionic distance only j = i remains: the mean is Λ_NE."""
    _, arrays, _ = compute_labels(trajectory, LabelSettings(2.0, T, tau_ps=5.0, radii=(1e-6,)))
    summary = conductivity(trajectory, tau_ps=5.0)
    assert arrays["truncated_R1e-06"].mean() == pytest.approx(
        summary["nernst_einstein"]["value"], rel=1e-10)


def test_truncated_labels_by_brute_force(trajectory):
    from localcond.io.lammps_dump import read_dump

    radius, lag = 6.0, 10
    _, arrays, _ = compute_labels(trajectory, LabelSettings(2.0, T, tau_ps=5.0, radii=(radius,)))
    frames = list(read_dump(trajectory))
    x0, x1 = frames[3].positions(), frames[3 + lag].positions()
    q = frames[3].columns["q"]
    box = 20.0
    qdr = q[:, None] * (x1 - x0)
    scale = len(q) * molar_conductivity_prefactor(T, 25) / 5.0
    expected = np.empty(len(q))
    for i in range(len(q)):
        d = x0 - x0[i]
        d -= box * np.round(d / box)
        near = np.linalg.norm(d, axis=1) < radius
        expected[i] = scale * qdr[i] @ qdr[near].sum(axis=0)
    np.testing.assert_allclose(arrays[f"truncated_R{radius:g}"][3], expected, rtol=1e-10)


def test_slope_labels_and_dataset_cli(trajectory, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "localcond", "labels", str(trajectory), "--timestep-fs", "2",
         "--temperature-k", "298", "--tau-ps", "5", "--tau-window-ps", "2", "6", "--radii", "4", "8",
         "--origin-stride", "5", "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = np.load(tmp_path / "t.labels.npz")
    meta = json.loads(str(data["metadata"]))
    assert meta["tau_window_ps"] == [2.0, 6.0] and meta["origin_stride"] == 5
    n_origins = len(range(0, 120 - 12, 5))
    assert data["label_exact"].shape == data["label_slope"].shape == (n_origins, 50)
    assert data["positions"].shape == (n_origins, 50, 3)
    assert [row["radius_A"] for row in meta["truncation"]] == [4.0, 8.0]
    # slope label of origin 5 (second origin with stride 5), by hand from the frames
    from localcond.io.lammps_dump import read_dump

    frames = list(read_dump(trajectory))
    q = frames[0].columns["q"]
    scale = len(q) * molar_conductivity_prefactor(T, 25)

    def qdr_dm(k):
        qdr = q[:, None] * (frames[5 + k].positions() - frames[5].positions())
        return qdr @ qdr.sum(axis=0)

    expected = scale * (qdr_dm(12) - qdr_dm(4)) / (6.0 - 2.0)
    np.testing.assert_allclose(data["label_slope"][1], expected, rtol=1e-10)


def test_radius_beyond_half_box_is_refused(trajectory):
    from localcond.errors import LocalcondError

    with pytest.raises(LocalcondError, match="below half the box width"):
        compute_labels(trajectory, LabelSettings(2.0, T, tau_ps=5.0, radii=(12.0,)))


def test_labels_of_molecular_ions_equal_those_of_the_ions_alone(tmp_path):
    """labels with --types and --molecules on an all-atom-like dump: the same per-ion labels
    as on the ions-only dump of the same trajectory (solvent and satellites left out)."""
    from test_conductivity import molecular_dumps

    every, ions = molecular_dumps(tmp_path, n_frames=20)
    alone = compute_labels(ions, LabelSettings(timestep_fs=2.0, temperature_k=298.0, tau_ps=2.0))[1]
    molecular = compute_labels(every, LabelSettings(timestep_fs=2.0, temperature_k=298.0, tau_ps=2.0,
                                                    ion_types=(1, 2), molecules=True))[1]
    np.testing.assert_allclose(molecular["exact"], alone["exact"], rtol=1e-12)
    assert np.abs(alone["exact"]).max() > 0
