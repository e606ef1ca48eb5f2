"""`localcond conductivity --current all`: ΔM of every charged atom, the solvent's and the
molecular ions' polarisation current included (campaign/labels/trajectory.py, ion_frames;
einstein_helfand.py, DisplacementAccumulator). Checked against cases solved by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from localcond.campaign.labels.conductivity import Settings, accumulate, analyse
from localcond.errors import LocalcondError

TIMESTEP_FS = 2.0
FRAME_PS = 0.1
BOX = 30.0


def write_molecular_dump(path: Path, mol, types, charges, positions) -> Path:
    """positions: [n_frames, n_atoms, 3], unwrapped (Å); dump columns id mol type q xu yu zu."""
    ids = np.arange(1, len(types) + 1)
    every = int(round(FRAME_PS * 1000 / TIMESTEP_FS))
    with open(path, "w") as handle:
        for k, x in enumerate(positions):
            handle.write(f"ITEM: TIMESTEP\n{k * every}\nITEM: NUMBER OF ATOMS\n{len(ids)}\n")
            handle.write("ITEM: BOX BOUNDS pp pp pp\n" + f"0 {BOX}\n" * 3)
            handle.write("ITEM: ATOMS id mol type q xu yu zu\n")
            np.savetxt(handle, np.column_stack([ids, mol, types, charges, x]),
                       fmt=["%d", "%d", "%d", "%.6g", "%.17g", "%.17g", "%.17g"])
    return path


def pooled_m2(path: Path, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Lags (ps) and <|dM|^2> over all origins (e^2 A^2)."""
    acc = accumulate([path], settings)
    sums = acc.sums[0].total()
    return acc.lags * acc.frame_ps, sums.m2[0] / sums.count[0]


def test_a_rotating_solvent_dipole_adds_its_bounded_current(tmp_path):
    """Ions at rest and one neutral solvent molecule (charges ±q at ±d/2 about a fixed
    centre) spinning at ω about z: the ions' ΔM is 0 at every lag, and with the solvent's
    current |ΔM(τ)|² = |Δp(τ)|² = 2 p² (1 − cos ωτ), p = q d, for every origin."""
    n_frames, omega, q, d = 200, 0.9, 0.41, 1.0  # ω in rad/ps
    t = np.arange(n_frames) * FRAME_PS
    ions = np.array([[5.0, 5.0, 5.0], [12.0, 5.0, 5.0]])
    unit = np.stack([np.cos(omega * t), np.sin(omega * t), np.zeros_like(t)], axis=1)
    centre = np.array([20.0, 20.0, 20.0])
    x = np.concatenate([np.broadcast_to(ions, (n_frames, 2, 3)),
                        (centre + 0.5 * d * unit)[:, None, :], (centre - 0.5 * d * unit)[:, None, :]], axis=1)
    path = write_molecular_dump(tmp_path / "spin.dump", mol=[1, 2, 3, 3], types=[1, 2, 3, 4],
                                charges=[1.0, -1.0, q, -q], positions=x)
    common = dict(timestep_fs=TIMESTEP_FS, temperature_k=300.0, ion_types=(1, 2), max_lag_ps=5.0)
    lags, ions_only = pooled_m2(path, Settings(**common))
    np.testing.assert_allclose(ions_only, 0.0, atol=1e-20)
    lags, every_charge = pooled_m2(path, Settings(**common, current="all"))
    np.testing.assert_allclose(every_charge, 2 * (q * d) ** 2 * (1 - np.cos(omega * lags)), rtol=1e-9, atol=1e-12)


def test_rigidly_moving_molecular_ions_carry_no_polarisation_current(tmp_path):
    """Molecular ions that translate without turning keep their dipole about the centre
    atom: Σ_a q_a Δr_a = Q Δr_centre exactly, so both currents give the same ⟨|ΔM|²⟩.
    Turning them adds the change of that dipole, which the ions-only current lacks."""
    rng = np.random.default_rng(3)
    n_mol, n_frames = 6, 150
    # each molecule: a centre (type 1, q = +1.3) and three satellites (type 2, q = -0.6)
    # → Q = -0.5; and as many single-atom cations (type 3, q = +0.5)
    offsets = rng.normal(scale=1.0, size=(n_mol, 3, 3))
    walk = rng.normal(scale=0.3, size=(n_frames, 2 * n_mol, 3)).cumsum(axis=0) + rng.random((2 * n_mol, 3)) * BOX
    centres, cations = walk[:, :n_mol], walk[:, n_mol:]
    satellites = centres[:, :, None, :] + offsets[None]
    x = np.concatenate([centres, satellites.reshape(n_frames, 3 * n_mol, 3), cations], axis=1)
    mol = np.concatenate([np.arange(1, n_mol + 1), np.repeat(np.arange(1, n_mol + 1), 3),
                          np.arange(n_mol + 1, 2 * n_mol + 1)])
    types = np.concatenate([np.full(n_mol, 1), np.full(3 * n_mol, 2), np.full(n_mol, 3)])
    charges = np.concatenate([np.full(n_mol, 1.3), np.full(3 * n_mol, -0.6), np.full(n_mol, 0.5)])
    common = dict(timestep_fs=TIMESTEP_FS, temperature_k=300.0, ion_types=(1, 3), molecules=True, max_lag_ps=3.0)
    rigid = write_molecular_dump(tmp_path / "rigid.dump", mol, types, charges, x)
    _, ions_only = pooled_m2(rigid, Settings(**common))
    _, every_charge = pooled_m2(rigid, Settings(**common, current="all"))
    np.testing.assert_allclose(every_charge, ions_only, rtol=1e-9)

    # the same molecules, each satellite set turned by a growing angle about z
    angle = 0.05 * np.arange(n_frames)
    c, s = np.cos(angle), np.sin(angle)
    turn = np.zeros((n_frames, 3, 3))
    turn[:, 0, 0], turn[:, 0, 1], turn[:, 1, 0], turn[:, 1, 1], turn[:, 2, 2] = c, -s, s, c, 1.0
    turned = centres[:, :, None, :] + np.einsum("fxy,may->fmax", turn, offsets)
    x_turned = np.concatenate([centres, turned.reshape(n_frames, 3 * n_mol, 3), cations], axis=1)
    spinning = write_molecular_dump(tmp_path / "turning.dump", mol, types, charges, x_turned)
    lags, turning_ions = pooled_m2(spinning, Settings(**common))
    _, turning_all = pooled_m2(spinning, Settings(**common, current="all"))
    np.testing.assert_allclose(turning_ions, ions_only, rtol=1e-9)  # the centres moved the same way
    # brute force: ΔM of every atom, every origin, at each lag
    m_all = np.einsum("a,fax->fx", charges, x_turned)
    frames = np.rint(lags / FRAME_PS).astype(int)
    brute = [np.mean(np.sum((m_all[k:] - m_all[:-k]) ** 2, axis=1)) for k in frames]
    np.testing.assert_allclose(turning_all, brute, rtol=1e-9)
    assert np.max(np.abs(turning_all - turning_ions) / turning_ions) > 1e-3


def test_the_summary_says_which_current_and_bad_values_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.5, size=(60, 4, 3)).cumsum(axis=0) + 10.0
    path = write_molecular_dump(tmp_path / "w.dump", mol=[1, 2, 3, 4], types=[1, 2, 1, 2],
                                charges=[1.0, -1.0, 1.0, -1.0], positions=x)
    settings = Settings(timestep_fs=TIMESTEP_FS, temperature_k=300.0, tau_ps=1.0, current="all")
    summary = analyse(accumulate([path], settings), settings)
    assert summary["current"].startswith("dM = sum over every charged atom")
    from localcond.cli import main

    out = tmp_path / "cli.json"
    assert main(["conductivity", str(path), "--timestep-fs", str(TIMESTEP_FS), "--temperature-k", "300",
                 "--tau-ps", "1", "--current", "all", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["current"] == summary["current"]
    with pytest.raises(LocalcondError, match="current must be one of"):
        accumulate([path], Settings(timestep_fs=TIMESTEP_FS, temperature_k=300.0, current="solvent"))
