"""The output-side domain check (localcond.engine.domain): a Λ_pred far outside the
training systems' Λ is said once, by the fix and by the ASE observer; a run inside
the range, or a model without a recorded range, says nothing."""

import dataclasses
import warnings

import numpy as np
import pytest

from helpers import System, run_lmp
from localcond.engine.domain import outside_note, training_range
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model


def trained_like(metadata, lambdas):
    """The reference function's metadata dressed as a trained model with these training Λ."""
    spread = {f"s{k}": {"members": [v], "std": 0.0, "lambda": v} for k, v in enumerate(lambdas)}
    return dataclasses.replace(metadata, trained=True, purpose="conductivity",
                               training={"ensemble_spread": spread}, description="test: range only")


def test_the_range_and_the_rule_by_hand():
    _, md = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    assert training_range(md) is None and outside_note(md, -1e4) is None  # a test model: no range
    md = trained_like(md, [160.0, 900.0, 2260.0])
    assert training_range(md) == (160.0, 2260.0)
    assert outside_note(md, 80.0) is None and outside_note(md, 4520.0) is None  # within a factor 2
    assert "far outside" in outside_note(md, 79.0) and "far outside" in outside_note(md, 4521.0)
    assert "-1.24e+04" in outside_note(md, -12400.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    module, md = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    return {"far": str(save_model(module, trained_like(md, [1000.0, 2000.0]), root / "far.pt")),
            "near": str(save_model(module, trained_like(md, [-5.0, 5.0]), root / "near.pt"))}


def test_the_fix_says_it_once_when_far_outside(tmp_path, models):
    """The reference function gives λ of order 0.1: far below a range of 1000–2000, inside −5 to 5."""
    far, near = tmp_path / "far", tmp_path / "near"
    far.mkdir()
    near.mkdir()
    run_lmp(far, System(model=models["far"], steps=200, nevery=10).input_text() + "run 100\n")
    assert (far / "log.lammps").read_text().count("lies far outside the Lambda of the model's 2 training") == 1
    run_lmp(near, System(model=models["near"], steps=200, nevery=10).input_text())
    assert "far outside" not in (near / "log.lammps").read_text()


def test_the_ase_observer_warns_once(tmp_path, models):
    from ase import Atoms

    from localcond.engine.ase import LocalConductivity
    from localcond.engine.observer import ConductivityObserver

    rng = np.random.default_rng(0)
    atoms = Atoms(["Li", "P"] * 8, positions=rng.random((16, 3)) * 10, cell=np.eye(3) * 10, pbc=True)
    calc = LocalConductivity(models["far"], species={"P": "PF6"})
    atoms.calc = calc
    obs = ConductivityObserver(atoms, calc, tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(25):
            atoms.positions += rng.normal(scale=0.1, size=(16, 3))
            obs()
    assert sum("far outside" in str(w.message) for w in caught) == 1
