"""``localcond reduce`` gives the same numbers from the three sources of one run:
the fix's reducer file, the dump of its per-atom λ, and the ASE observer fed the
same frames."""

import json

import numpy as np
import pytest
from ase import Atoms

from helpers import System, run_lmp
from localcond.engine.ase import LocalConductivity
from localcond.cli.reduce import reduce_files
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model
from localcond.engine.observer import ConductivityObserver
from localcond.engine.reducers.store import load


def fix_run(root, fix_extra):
    """A deterministic run with the reference model and its dump of unwrapped positions (%.17g)."""
    model = save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0), root / "ref.pt")
    text = System(model=str(model), steps=400, nevery=10, box=26.0, n_per_type=40, deterministic=True,
                  fix_extra=fix_extra).input_text()
    run_lmp(root, text.replace("id type q x y z f_lc", "id type q xu yu zu f_lc"))
    return root, model


@pytest.fixture(scope="module")
def lammps_run(tmp_path_factory):
    return fix_run(tmp_path_factory.mktemp("run"), "file red hist -3 3 12 tcorr 4")


def observe_dump(root, model, prefix, **options):
    """The ASE observer fed the fix's dumped frames (its own neighbour search and model call)."""
    calc = LocalConductivity(model, species={"P": "PF6"})
    obs = None
    for frame in read_dump(root / "dump.lc"):
        x = np.stack([frame.columns[c] for c in ("xu", "yu", "zu")], axis=1)
        atoms = Atoms(["Li" if t == 1 else "P" for t in frame.types], positions=x, cell=frame.cell, pbc=True)
        atoms.calc = calc
        if obs is None:
            obs = ConductivityObserver(atoms, calc, prefix, **options)
        obs.atoms = atoms
        obs()
    obs.write()


def by_source(out_dir):
    report = json.loads((out_dir / "summary.json").read_text())
    return {s["sources"][0].split(" ")[0]: s for s in report["systems"]}


def test_fix_file_dump_and_ase_agree(lammps_run, tmp_path):
    root, model = lammps_run
    # the ASE observer on the dumped frames (its own neighbor search and model call)
    observe_dump(root, model, tmp_path / "ase", hist=(-3, 3, 12), tcorr=4)
    reduce_files([str(root / "red.reduce.npz"), str(tmp_path / "ase.reduce.npz"), str(root / "dump.lc")],
                 tmp_path / "out", dump_settings={"types": ["Li", "PF6"], "timestep_fs": 2.0,
                                                  "options": {"hist": [-3, 3, 12], "tcorr": 4}})
    systems = by_source(tmp_path / "out")
    assert set(systems) == {"lammps", "ase", "dump"}
    fix, ase, dump = systems["lammps"], systems["ase"], systems["dump"]
    assert fix["evaluations"] == ase["evaluations"] == dump["evaluations"] == 41  # >= 32: a blocking error exists
    for other, rel in ((dump, 1e-12), (ase, 1e-6)):
        for key in ("value", "stderr"):
            assert other["lambda_pred"][key] == pytest.approx(fix["lambda_pred"][key], rel=rel)
        assert other["lambda_std"] == pytest.approx(fix["lambda_std"], rel=rel)
        np.testing.assert_allclose(other["time_correlation"]["normalized"]["PF6"],
                                   fix["time_correlation"]["normalized"]["PF6"], rtol=1e-5)
    assert dump["curves"]["lambda_distribution"] == fix["curves"]["lambda_distribution"]
    assert dump["time_correlation"]["tau_ps"] == fix["time_correlation"]["tau_ps"]


@pytest.fixture(scope="module")
def lammps_run_eh_corr(tmp_path_factory):
    return fix_run(tmp_path_factory.mktemp("run_eh"), "file red corr 8 8 eh 8 4 298")


def test_ase_observer_takes_the_fix_options_and_agrees_with_the_fix(lammps_run_eh_corr, tmp_path):
    """The observer's corr and eh (same names as the fix's keywords) on the fix's dumped frames
    give the fix's pair sums (binned in C++ by the fix, in numpy by the observer) and its live
    Einstein-Helfand curve (unwrapped positions handed over by the fix, read from the dump here)."""
    root, model = lammps_run_eh_corr
    observe_dump(root, model, tmp_path / "ase", corr=(8.0, 8), eh=(8, 4, 298.0), interval_ps=10 * 0.002)
    fix_reducers, _ = load(root / "red.reduce.npz")
    ase_reducers, _ = load(tmp_path / "ase.reduce.npz")
    np.testing.assert_allclose(ase_reducers["pair_correlation"].sums, fix_reducers["pair_correlation"].sums,
                               rtol=1e-6, atol=1e-6)
    fix = json.loads((root / "red.summary.json").read_text())["einstein_helfand"]
    ase = json.loads((tmp_path / "ase.summary.json").read_text())["einstein_helfand"]
    assert ase["tau_ps"] == pytest.approx(fix["tau_ps"], rel=1e-12)
    assert ase["molar_conductivity"] == pytest.approx(fix["molar_conductivity"], rel=1e-6)
