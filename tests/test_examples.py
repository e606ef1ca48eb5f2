"""The examples run (so the documentation cannot rot)."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ase_langevin_example(tmp_path):
    example = load("ase_langevin_electrolyte")
    summary = example.main(["--steps", "40", "--npairs", "20", "--out", str(tmp_path / "ex")])
    assert summary["calls"] == 5
    assert json.loads((tmp_path / "ex.summary.json").read_text())["calls"] == 5
    # the LAMMPS forces include the ions' Coulomb interaction (charges reach LAMMPS)
    atoms = example.electrolyte(20, 1.0, seed=1)
    energies = []
    for eps in (10.0, 40.0):
        atoms.calc = example.lammps_forces(eps)
        energies.append(atoms.get_potential_energy())
    assert energies[0] < energies[1] < 0
    assert energies[0] == pytest.approx(4 * energies[1], rel=0.05)  # Coulomb dominates: E ~ 1/eps
