"""The ASE observer feeds the shared reducers; results equal numpy on the same values."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.md.langevin import Langevin
from ase import units

from helpers import MPIRUN
from localcond.engine.ase import LocalConductivity
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model
from localcond.engine.observer import ConductivityObserver
from localcond.engine.reducers.store import load


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 5.0),
                      tmp_path_factory.mktemp("m") / "ref.pt")


def salt(seed=0, n=16, box=11.0):
    rng = np.random.default_rng(seed)
    grid = np.array(np.meshgrid(*[np.arange(4)] * 3)).reshape(3, -1).T[:n] * box / 4
    return Atoms(["Li", "P"] * (n // 2), positions=grid + rng.normal(scale=0.2, size=(n, 3)),
                 cell=np.eye(3) * box, pbc=True)


def test_observer_with_langevin_matches_numpy(model, tmp_path):
    atoms = salt()
    calc = LocalConductivity(model, species={"P": "PF6"}, calculator=LennardJones(sigma=2.5, epsilon=0.01, rc=5.0))
    atoms.calc = calc
    obs = ConductivityObserver(atoms, calc, tmp_path / "run", hist=(-3, 3, 12), tcorr=3)
    seen = []
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.02, fixcm=False,
                   rng=np.random.default_rng(1))
    dyn.attach(obs, interval=5)
    dyn.attach(lambda: seen.append(calc.get_property("local_conductivity", atoms).copy()), interval=5)
    dyn.run(100)
    obs.write()
    values = np.array(seen)
    assert len(values) == obs.calls == 21
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["lambda_pred"]["value"] == pytest.approx(values.mean(axis=1).mean(), rel=1e-12)
    assert summary["species"]["Li"]["mean"] == pytest.approx(values[:, ::2].mean(), rel=1e-12)
    assert summary["lambda_std"] == pytest.approx(values.std(), rel=1e-10)
    reducers, meta = load(tmp_path / "run.reduce.npz")
    assert meta["source"] == "ase" and meta["calls"] == 21
    counts, _ = np.histogram(values[:, 1::2], bins=np.linspace(-3, 3, 13))
    np.testing.assert_array_equal(reducers["histogram"].counts[1, 1:-1], counts)


MPI_SCRIPT = r"""
import sys
import numpy as np
from mpi4py import MPI
from ase import Atoms
from localcond.engine.ase import LocalConductivity
from localcond.engine.observer import ConductivityObserver
comm = MPI.COMM_WORLD
rng = np.random.default_rng(comm.rank)
atoms = Atoms(["Li", "P"] * 4, positions=rng.random((8, 3)) * 9, cell=np.eye(3) * 9, pbc=True)
calc = LocalConductivity(sys.argv[1], species={"P": "PF6"})
obs = ConductivityObserver(atoms, calc, sys.argv[2], tcorr=2, comm=comm)
values = []
for step in range(5):
    atoms.positions += rng.normal(scale=0.3, size=(8, 3))
    obs()
    values.append(calc.get_property("local_conductivity", atoms).copy())
obs.write()
all_values = comm.gather(np.array(values), root=0)
if comm.rank == 0:
    np.save(sys.argv[2] + ".values.npy", np.array(all_values))
"""


@pytest.mark.mpi
def test_replicas_under_mpirun_combine(model, tmp_path):
    script = tmp_path / "obs.py"
    script.write_text(MPI_SCRIPT)
    prefix = tmp_path / "mpi"
    proc = subprocess.run([MPIRUN, "-np", "2", sys.executable, str(script), str(model), str(prefix)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    values = np.load(str(prefix) + ".values.npy")  # [rank, call, atom]
    summary = json.loads((tmp_path / "mpi.summary.json").read_text())
    assert summary["replicas"] == 2 and summary["n_values"] == values.size
    assert summary["lambda_mean_over_all_values"] == pytest.approx(values.mean(), rel=1e-12)
    reducers, _ = load(tmp_path / "mpi.reduce.npz")
    assert len(reducers["time_correlation"].ions.ids) == 16  # both replicas' ions, IDs offset by rank


def test_unwritable_prefix_is_refused_before_any_step(model, tmp_path):
    from localcond.errors import LocalcondError

    calc = LocalConductivity(model, species={"P": "PF6"})
    with pytest.raises(LocalcondError, match="directory '.*no/such' does not exist"):
        ConductivityObserver(None, calc, tmp_path / "no" / "such" / "run")


def test_smallest_periodic_width_by_hand():
    """A cube of 10 Å sheared by xy = 5: the faces normal to x are 10·10/|b| = 100/√125 apart;
    an open direction does not count."""
    from localcond.engine.neighbors import smallest_periodic_width
    cell = np.array([[10.0, 0, 0], [5.0, 10.0, 0], [0, 0, 12.0]])
    assert smallest_periodic_width(cell, True) == pytest.approx(100 / np.sqrt(125))
    assert smallest_periodic_width(cell, [False, True, True]) == pytest.approx(10.0)
    assert smallest_periodic_width(cell, False) == np.inf


def test_wrapped_positions_with_eh_are_refused(model, tmp_path):
    """An ion wrapped back into the cell between calls (atoms.wrap()) jumps by a cell
    length: refused by name instead of a Λ_EH tens of times too large."""
    atoms = salt()
    calc = LocalConductivity(model, species={"P": "PF6"})
    obs = ConductivityObserver(atoms, calc, tmp_path / "run", eh=(4, 2, 300.0), interval_ps=0.01)
    obs()
    atoms.positions[3] += [0.3, 0.0, 0.0]  # an ordinary step is accepted
    obs()
    atoms.positions[5, 0] = -0.1
    obs()
    atoms.positions[5, 0] += 11.0  # the same ion, wrapped
    with pytest.raises(ValueError, match=r"atom ID 6 moved 11 A .* wrapped coordinates without image flags"):
        obs()


def test_observer_follows_molecular_ions_by_their_centres(model, tmp_path):
    """A calculator with molecules=True: the observer's live Λ_EH follows the ions' centre
    atoms with their molecules' charges; here against ΔM of the centres with charges ±1
    written out by hand (the satellites, which move on their own, enter nothing)."""
    from localcond.units import molar_conductivity_prefactor

    rng = np.random.default_rng(4)
    centres = rng.random((8, 3)) * 12.0
    symbols = ["Li"] * 4 + ["P"] * 4 + ["F"] * 8
    charges = [1.0] * 4 + [0.5] * 4 + [-0.75] * 8
    mols = list(range(1, 9)) + [5, 5, 6, 6, 7, 7, 8, 8]
    atoms = Atoms(symbols, positions=np.concatenate([centres, np.repeat(centres[4:], 2, axis=0) + 1.0]),
                  cell=np.eye(3) * 12.0, pbc=True)
    atoms.set_initial_charges(charges)
    atoms.arrays["mol-id"] = np.array(mols)
    calc = LocalConductivity(model, species={"Li": "Li", "P": "PF6", "F": None}, molecules=True)
    atoms.calc = calc
    obs = ConductivityObserver(atoms, calc, tmp_path / "run", eh=(3, 1, 300.0), interval_ps=0.1)
    path = []
    for _ in range(12):
        atoms.positions += rng.normal(scale=0.2, size=atoms.positions.shape)
        path.append(atoms.positions[:8].copy())
        obs()
    obs.write()
    summary = json.loads((tmp_path / "run.summary.json").read_text())["einstein_helfand"]
    q = np.array([1.0] * 4 + [-1.0] * 4)
    m = np.array([(q[:, None] * x).sum(axis=0) for x in path])
    dm = m[1:] - m[:-1]
    expected = molar_conductivity_prefactor(300.0, 4) * (dm**2).sum(axis=1).mean() / 0.1
    assert summary["n_salt"] == 4 and summary["molar_conductivity"][0] == pytest.approx(expected, rel=1e-10)
