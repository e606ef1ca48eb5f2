"""The ASE calculator: brute-force references, ASE's caching, wrapping, errors,
and the same values as the LAMMPS fix on the same frame."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT

from helpers import System, brute_force_reference, run_lmp
from localcond.engine.ase import LocalConductivity
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0),
                      tmp_path_factory.mktemp("m") / "ref.pt")


def salt(cell, n=20, seed=0):
    rng = np.random.default_rng(seed)
    symbols = ["Li", "P"] * (n // 2)
    atoms = Atoms(symbols, scaled_positions=rng.random((n, 3)), cell=cell, pbc=True)
    return atoms, np.where(np.array(symbols) == "Li", 1.0, -1.0)


@pytest.mark.parametrize("cell", [
    np.eye(3) * 14.0,
    [[13.0, 0, 0], [4.0, 12.0, 0], [-3.0, 2.0, 11.0]],  # non-orthogonal
    np.eye(3) * 7.0,  # cutoff 6 > half the box: several images
])
def test_values_equal_brute_force(model, cell):
    atoms, charges = salt(cell)
    atoms.calc = LocalConductivity(model, species={"P": "PF6"})
    lam = atoms.calc.get_property("local_conductivity", atoms)
    expected = brute_force_reference(atoms.positions, charges, atoms.cell.array, (True,) * 3, 6.0)
    np.testing.assert_allclose(lam, expected, rtol=1e-10, atol=1e-12)
    assert atoms.calc.get_property("mean_local_conductivity", atoms) == pytest.approx(expected.mean())


def test_caching_like_ase(model, monkeypatch):
    atoms, _ = salt(np.eye(3) * 12.0)
    calc = LocalConductivity(model, species={"P": "PF6"})
    atoms.calc = calc
    calls = []
    original = LocalConductivity.calculate
    monkeypatch.setattr(LocalConductivity, "calculate",
                        lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    first = atoms.calc.get_property("local_conductivity", atoms).copy()
    atoms.calc.get_property("local_conductivity", atoms)
    assert len(calls) == 1 and not calc.calculation_required(atoms, ["local_conductivity"])
    atoms.positions[0] += 0.5
    assert calc.calculation_required(atoms, ["local_conductivity"])
    moved = atoms.calc.get_property("local_conductivity", atoms)
    assert len(calls) == 2 and not np.allclose(moved, first)


def test_wraps_a_base_calculator(model):
    atoms = Atoms("Cu4", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                  cell=np.eye(3) * 3.6, pbc=True).repeat(2)
    calc = LocalConductivity(model, species={"Cu": "Li"}, calculator=EMT())
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(EMT().get_potential_energy(atoms))
    assert np.allclose(atoms.get_forces(), 0.0, atol=1e-10)
    lam = atoms.calc.get_property("local_conductivity", atoms)
    assert lam.shape == (32,) and np.all(lam > 0)  # like charges: positive pair terms
    with pytest.raises(PropertyNotImplementedError):
        LocalConductivity(model, species={"Cu": "Li"}).get_property("energy", atoms)


def test_bad_input_is_a_clear_value_error(model, tmp_path):
    atoms, _ = salt(np.eye(3) * 12.0)
    with pytest.raises(ValueError, match=r"atom 1 \(P\) has no species in the model \(map it"):
        LocalConductivity(model).get_property("local_conductivity", atoms)
    with pytest.raises(ValueError, match="does not know"):
        LocalConductivity(model, species={"P": "Cl"})
    slab = atoms.copy()
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="needs a periodic system"):
        LocalConductivity(model, species={"P": "PF6"}).get_property("local_conductivity", slab)
    nocell = Atoms("LiLi", positions=[[0, 0, 0], [1, 0, 0]], pbc=True)
    with pytest.raises(ValueError, match="non-zero volume"):
        LocalConductivity(model).get_property("local_conductivity", nocell)
    charged = atoms.copy()
    charged.set_initial_charges([0.8, -0.8] * 10)
    with pytest.raises(ValueError, match=r"atoms \(species Li\) have charges from 0.8 to 0.8 e, but the model.s species Li has charge 1 e"):
        LocalConductivity(model, species={"P": "PF6"}).get_property("local_conductivity", charged)
    with pytest.raises(ValueError, match="does not exist"):
        LocalConductivity(tmp_path / "missing.pt")
    broken = atoms.copy()
    broken.positions[3, 0] = np.nan
    with pytest.raises(ValueError, match="atom 3 has a non-finite position"):
        LocalConductivity(model, species={"P": "PF6"}).get_property("local_conductivity", broken)


def test_same_values_as_the_lammps_fix(model, tmp_path):
    run_lmp(tmp_path, System(model=str(model), tilt=(3.0, -2.0, 1.0)).input_text())
    frame = list(read_dump(tmp_path / "dump.lc"))[-1]
    symbols = np.where(frame.types == 1, "Li", "P")
    atoms = Atoms(list(symbols), positions=frame.positions(), cell=frame.cell, pbc=frame.pbc)
    atoms.set_initial_charges(frame.columns["q"])
    lam = LocalConductivity(model, species={"P": "PF6"}).get_property("local_conductivity", atoms)
    np.testing.assert_allclose(lam, frame.columns["f_lc"], rtol=1e-6, atol=1e-9)


def test_molecular_ions_from_mol_ids_equal_the_ions_alone(tmp_path):
    """molecules=True: the anion's centre (symbol X) carries its molecule's charge, the
    satellites (F) and a neutral solvent molecule are excluded; λ on the centres equals λ
    of the same ions written as single atoms, and a molecule of the wrong charge is named."""
    from ase import Atoms

    from localcond.model.export import save_model
    from localcond.model.reference import make_reference_model

    model = save_model(*make_reference_model(["Li", "A"], [1.0, -1.0], 6.0), tmp_path / "ref.pt")
    rng = np.random.default_rng(2)
    centres = rng.random((8, 3)) * 14.0
    symbols, positions, charges, mols = [], [], [], []
    for k, x in enumerate(centres):
        if k < 4:
            symbols.append("Li"), positions.append(x), charges.append(1.0), mols.append(k + 1)
        else:
            symbols += ["X", "F", "F"]
            positions += [x, x + [1.2, 0, 0], x - [1.2, 0, 0]]
            charges += [0.5, -0.75, -0.75]
            mols += [k + 1] * 3
    symbols += ["O", "H"]
    positions += [[1.0, 1.0, 1.0], [1.9, 1.0, 1.0]]
    charges += [-0.4, 0.4]
    mols += [20, 20]
    atoms = Atoms(symbols, positions=positions, cell=np.eye(3) * 14.0, pbc=True)
    atoms.set_initial_charges(charges)
    atoms.arrays["mol-id"] = np.array(mols)
    species = {"Li": "Li", "X": "A", "F": None, "O": None, "H": None}
    atoms.calc = LocalConductivity(model, species=species, molecules=True)
    lam = atoms.calc.get_property("local_conductivity", atoms)
    alone = Atoms(["Li"] * 4 + ["X"] * 4, positions=centres, cell=np.eye(3) * 14.0, pbc=True)
    alone.set_initial_charges([1.0] * 4 + [-1.0] * 4)
    alone.calc = LocalConductivity(model, species={"Li": "Li", "X": "A"})
    expected = alone.calc.get_property("local_conductivity", alone)
    is_centre = np.isin(np.array(symbols), ["Li", "X"])
    np.testing.assert_allclose(lam[is_centre], expected, rtol=1e-12)
    assert np.all(lam[~is_centre] == 0.0) and np.abs(expected).max() > 0.01
    with pytest.raises(ValueError, match="charges from 0.5 to 0.5 e"):  # without molecules: X carries its own +0.5 e
        LocalConductivity(model, species=species).get_property("local_conductivity", atoms.copy())
    broken = atoms.copy()
    del broken.arrays["mol-id"]
    broken.calc = LocalConductivity(model, species=species, molecules=True)
    with pytest.raises(ValueError, match="mol-id"):
        broken.calc.get_property("local_conductivity", broken)
