"""The domain checks (localcond.engine.domain): a Λ_pred far outside the training
systems' Λ, mean descriptors outside the training systems' domain, and masses or a
thermostat other than the training runs' are each said once, by the fix and by the
ASE observer; a run inside, or a model without a recorded domain, says nothing."""

import dataclasses
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import System, run_lmp
from localcond.engine.domain import outside_note, training_range
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model

ROOT = Path(__file__).resolve().parents[1]


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
    said = observed_warnings(models["far"], ["Li", "P"], {"P": "PF6"}, tmp_path / "run", calls=25, seed=0)
    assert sum("far outside" in m for m in said) == 1


def observed_warnings(model, symbols, species, prefix, calls, seed, masses=None):
    """The warnings of an ASE observer over ``calls`` calls on 8 pairs of ``symbols`` in a
    10 Å box, moved at random between calls."""
    from ase import Atoms

    from localcond.engine.ase import LocalConductivity
    from localcond.engine.observer import ConductivityObserver

    rng = np.random.default_rng(seed)
    atoms = Atoms(symbols * 8, positions=rng.random((16, 3)) * 10, cell=np.eye(3) * 10, pbc=True)
    if masses is not None:
        atoms.set_masses(masses * 8)
    calc = LocalConductivity(str(model), species=species)
    atoms.calc = calc
    obs = ConductivityObserver(atoms, calc, prefix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(calls):
            atoms.positions += rng.normal(scale=0.1, size=(16, 3))
            obs()
    return [str(w.message) for w in caught]


# -- the dynamics and the structure (descriptor domain) ---------------------------------------

def test_the_dynamics_rule_by_hand():
    from localcond.engine.domain import dynamics_note

    _, md = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    md = dataclasses.replace(md, trained=True, purpose="conductivity", training={"dynamics": {
        "masses": {"Li": 20.0, "PF6": 60.0}, "thermostat": {"style": "langevin", "damp_fs": 500.0}}})
    same = dynamics_note(md, [0, 1], [20.0, 60.0], [20.0, 60.0], ["nve", "langevin", "localcond"])
    assert same is None
    assert dynamics_note(md, [0, 1, -1], [20.0, 60.0, 1.0], [20.0, 60.0, 1.0], ["langevin/kk"]) is None  # NULL type
    heavy = dynamics_note(md, [0, 1], [80.0, 60.0], [80.0, 60.0], ["langevin"])
    assert "atoms of type 1 (Li) have mass 80, the training runs 20" in heavy and "type 2" not in heavy
    mixed = dynamics_note(md, [0, 1], [20.0, 59.0], [20.0, 61.0], ["langevin"])
    assert "type 2 (PF6) have mass 59 to 61" in mixed
    other = dynamics_note(md, [0, 1], [20.0, 60.0], [20.0, 60.0], ["nvt", "localcond"])
    assert "no fix langevin (the training runs' thermostat, damp 500 fs); this run has localcond, nvt" in other
    assert dynamics_note(md, [0, 1], [20.0, 60.0], [20.0, 60.0], None) is None  # ASE: thermostat unknown
    assert dynamics_note(md, [0, 1], [np.inf, 60.0], [-np.inf, 60.0], ["langevin"]) is None  # no atoms of type 1


def test_the_descriptor_domain_by_hand():
    """Three systems with one feature each, X = 0, 1, 5: left out, the third lies
    |5 − 0.5| / 0.5 = 9 spreads from the other two (mean 0.5, std 0.5): the threshold is 18."""
    from localcond.campaign.learn.ridge import descriptor_domain
    from localcond.engine.domain import structure_note

    domain = descriptor_domain(np.array([[0.0], [1.0], [5.0]]), ["a", "b", "c"])
    assert domain["leave_one_out_distance"] == pytest.approx({"a": 1.5, "b": 0.6, "c": 9.0})  # |0−3|/2, |1−2.5|/2.5
    assert domain["threshold"] == pytest.approx(18.0)
    # all three: mean 2, std sqrt(14/3); X = 2 + 18 sqrt(14/3) is at the threshold, a little farther is outside
    _, md = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    md = dataclasses.replace(md, trained=True, purpose="conductivity", training={"domain": domain})
    edge = 2.0 + 18.0 * np.sqrt(14.0 / 3.0)
    assert structure_note(md, np.array([edge * 0.999])) is None
    note = structure_note(md, np.array([edge + 0.5 * np.sqrt(14.0 / 3.0)]))
    assert "outside the model's training domain" in note
    assert "18.5 training spreads" in note and "threshold 18," in note and "left out, 9)" in note
    assert structure_note(md, np.array([edge, 1.0])) is None  # another model's features: not comparable


def electrolyte(directory, nprocs=1, **variables):
    """The grid's input (lammps_inputs/electrolyte) with the default model: 60 pairs, 11
    evaluations in production, enough for the structure check (WARN_AFTER = 10)."""
    from helpers import LMP, MPIRUN
    from localcond.model.default import model_path

    settings = {"npairs": 60, "conc": 0.6, "eps": 14, "dt": 4.0, "equil": 500, "prod": 500, "every": 500,
                "lcevery": 50, "lceh": 4, "model": model_path(), "out": "t", **variables}
    cmd = [LMP, "-in", str(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte"), "-log", "log.lammps",
           "-screen", "none"] + [a for k, v in settings.items() for a in ("-var", k, str(v))]
    if nprocs > 1:
        cmd = [MPIRUN, "-np", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, (directory / "log.lammps").read_text()[-3000:]
    return (directory / "log.lammps").read_text() + proc.stdout + proc.stderr


DYNAMICS = "dynamics differ from the model's training runs"
STRUCTURE = "outside the model's training domain"


def test_the_training_state_says_nothing(tmp_path):
    """A held-out state point of the grid with the training runs' masses and thermostat."""
    log = electrolyte(tmp_path)
    assert DYNAMICS not in log and STRUCTURE not in log and "far outside" not in log


@pytest.mark.parametrize("nprocs", [1, 2])
def test_heavier_ions_are_said_once(tmp_path, nprocs):
    """Every mass × 4 (in.electrolyte's mscale): the same structure, other dynamics. The
    warning names both types, once, on one rank or two."""
    log = electrolyte(tmp_path, nprocs, mscale=4)
    assert log.count(DYNAMICS) == 1
    assert "type 1 (cation) have mass 80, the training runs 20" in log
    assert "type 2 (anion) have mass 240, the training runs 60" in log
    assert STRUCTURE not in log


@pytest.mark.parametrize("nprocs", [1, 2])
def test_a_concentrated_electrolyte_is_outside_the_structure_domain(tmp_path, nprocs):
    """5 mol/L, far above the grid's 2 mol/L: the descriptors (summed over ranks) say so
    once, and the training dynamics are not questioned."""
    log = electrolyte(tmp_path, nprocs, conc=5.0)
    assert log.count(STRUCTURE) == 1 and DYNAMICS not in log
    # each of the evaluation's notes is a line of its own that names the fix
    assert all(line.startswith("fix localcond lc: WARNING") for line in log.splitlines() if STRUCTURE in line)


def test_the_ase_observer_checks_masses_and_structure(tmp_path):
    """The default model through ASE: real sodium and chloride masses are not the training
    runs' 20 and 60 (said once, by species); 16 ions in a 10 Å box (about 27 mol/L) are
    outside the structure domain (said once, after WARN_AFTER calls). With the training
    masses, the masses say nothing."""
    from localcond.model.default import model_path

    said = observed_warnings(model_path(), ["Na", "Cl"], {"Na": "cation", "Cl": "anion"}, tmp_path / "dense",
                             calls=12, seed=1)
    assert sum(DYNAMICS in m for m in said) == 1
    assert any("species cation have mass 22.9898" in m and "species anion have mass 35.45" in m for m in said)
    assert sum(STRUCTURE in m for m in said) == 1
    said = observed_warnings(model_path(), ["Na", "Cl"], {"Na": "cation", "Cl": "anion"}, tmp_path / "light",
                             calls=1, seed=1, masses=[20.0, 60.0])
    assert not any(DYNAMICS in m for m in said)


def test_a_rerun_is_not_said_to_lack_the_thermostat(tmp_path):
    """A rerun of the grid's dump integrates nothing: the thermostat is the dump's, not
    visible to the fix, and goes unchecked; the masses (from the restart) still are."""
    from helpers import run_lmp
    from localcond.model.default import model_path

    log = electrolyte(tmp_path, mscale=4)
    assert log.count(DYNAMICS) == 1 and "no fix langevin" not in log
    pairs = "\n".join(f"pair_coeff {a} {b} 0.5 {s} {s * 2 ** (1 / 6)}" for a, b, s in ((1, 1, 3.0), (2, 2, 4.5),
                                                                                      (1, 2, 3.75)))
    run_lmp(tmp_path, f"""read_restart t.restart
pair_style lj/cut/coul/long 16.0
{pairs}
pair_modify shift yes
kspace_style pppm 1.0e-4
dielectric 14
comm_modify cutoff 47
fix lcr all localcond 1 {model_path()} types cation anion
rerun t.dump dump x y z box yes label x xu label y yu label z zu
""")
    log = (tmp_path / "log.lammps").read_text()
    assert log.count(DYNAMICS) == 1 and "WARNING: WARNING" not in log
    assert "type 1 (cation) have mass 80" in log and "no fix langevin" not in log


def test_a_dynamics_block_names_only_the_models_species():
    """The training configurations' dynamics block (both solvers read it through
    dynamics_problem): masses must be positive and, once the species are known, of them."""
    from localcond.engine.domain import dynamics_problem

    block = {"masses": {"cation": 20.0, "anion": 60.0}, "thermostat": {"style": "langevin"}}
    assert dynamics_problem(block) is None and dynamics_problem(block, ["cation", "anion"]) is None
    assert "['anion']" in dynamics_problem(block, ["cation"])
    assert "positive" in dynamics_problem({**block, "masses": {"cation": -1.0}})
    assert "thermostat" in dynamics_problem({"masses": {"cation": 20.0}})
