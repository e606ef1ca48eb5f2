"""The power-spectrum model: spherical harmonics against scipy, descriptors
against a brute-force sum over periodic images, symmetries, smoothness at the
cutoff, and export through the TorchScript contract."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.special import sph_harm_y
from scipy.stats import special_ortho_group

from localcond.model.contract import read_metadata
from localcond.model.export import save_model
from localcond.model.power_spectrum import RealSphericalHarmonics, make_power_spectrum_model
from localcond.engine.runtime import evaluate, load_model

BOX = 9.0  # Å, cubic
N_MAX, L_MAX = 3, 4
SPECIES, CHARGES = ("Li", "PF6"), (1.0, -1.0)


def real_harmonic(l: int, m: int, vectors: np.ndarray) -> np.ndarray:
    """Real Y_lm (orthonormal, no Condon–Shortley phase) from scipy's complex ones."""
    x, y, z = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    polar, azimuth = np.arccos(np.clip(z, -1.0, 1.0)), np.arctan2(y, x)
    complex_y = sph_harm_y(l, abs(m), polar, azimuth)
    if m == 0:
        return complex_y.real
    part = complex_y.real if m > 0 else complex_y.imag
    return np.sqrt(2.0) * (-1.0) ** m * part


def brute_power_spectrum(
    positions: np.ndarray, species: np.ndarray, box: float, cutoff: float, n_max: int,
    l_max: int, n_species: int,
) -> np.ndarray:
    """p[i, pair·(l_max+1) + l] by explicit loops over all atoms and lattice
    translations (the module docstring's definitions, written independently)."""
    reach = int(np.ceil(cutoff / box))
    shifts = box * np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), float)
    width = cutoff / n_max
    centers = np.arange(n_max) * width
    size = n_species * n_max
    out = []
    for i in range(len(positions)):
        density = np.zeros((size, (l_max + 1) ** 2))
        for j in range(len(positions)):
            d = positions[j] + shifts - positions[i]
            r = np.linalg.norm(d, axis=1)
            near = (r > 0) & (r < cutoff)
            d, r = d[near], r[near]
            radial = np.exp(-0.5 * ((r[:, None] - centers[None, :]) / width) ** 2)
            radial *= 0.5 * (np.cos(np.pi * r / cutoff) + 1.0)[:, None]
            for l in range(l_max + 1):
                for m in range(-l, l + 1):
                    harmonic = real_harmonic(l, m, d)
                    for n in range(n_max):
                        density[species[j] * n_max + n, l * l + l + m] += np.sum(radial[:, n] * harmonic)
        features = []
        for a in range(size):
            for b in range(a, size):
                for l in range(l_max + 1):
                    block = slice(l * l, (l + 1) ** 2)
                    features.append(4 * np.pi / (2 * l + 1) * density[a, block] @ density[b, block])
        out.append(features)
    return np.array(out)


def small_cell(seed: int = 3, n: int = 8) -> tuple[Atoms, np.ndarray]:
    rng = np.random.default_rng(seed)
    atoms = Atoms(positions=rng.random((n, 3)) * BOX, cell=np.eye(3) * BOX, pbc=True)
    return atoms, np.arange(n) % 2


def ase_edges(atoms: Atoms, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    i, j, d = neighbor_list("ijD", atoms, cutoff)
    return torch.tensor(np.stack([i, j]), dtype=torch.int64), torch.tensor(d, dtype=torch.float64)


def run(module, species, edge_index, edge_vec, n_local) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(species), edge_index, edge_vec, n_local).numpy()


@pytest.fixture(scope="module")
def model():
    """float64, cutoff 7 Å > BOX/2, standardised on the small cell so that the
    random MLPs see inputs of order one."""
    module, metadata = make_power_spectrum_model(
        SPECIES, CHARGES, cutoff=7.0, n_max=N_MAX, l_max=L_MAX, hidden=(16, 16), dtype="float64",
        seed=1,
    )
    atoms, species = small_cell(seed=11, n=40)
    species_t = torch.as_tensor(species)
    edge_index, edge_vec = ase_edges(atoms, 7.0)
    with torch.no_grad():
        module.set_standardization(species_t, module.descriptors(species_t, edge_index, edge_vec, 40))
    return module


def test_spherical_harmonics_match_scipy():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 3)) * rng.uniform(0.5, 9.0, size=(200, 1))
    ours = RealSphericalHarmonics(L_MAX).double()(torch.tensor(vectors)).numpy()
    assert ours.shape == (200, (L_MAX + 1) ** 2)
    for l in range(L_MAX + 1):
        for m in range(-l, l + 1):
            np.testing.assert_allclose(
                ours[:, l * l + l + m], real_harmonic(l, m, vectors), rtol=1e-10, atol=1e-12,
                err_msg=f"l={l} m={m}",
            )


@pytest.mark.parametrize("cutoff", [6.0, 9.5])  # > BOX/2; 9.5 > BOX: own images count too
def test_descriptors_match_brute_force_over_images(cutoff):
    module, _ = make_power_spectrum_model(
        SPECIES, CHARGES, cutoff=cutoff, n_max=N_MAX, l_max=L_MAX, dtype="float64"
    )
    atoms, species = small_cell()
    edge_index, edge_vec = ase_edges(atoms, cutoff)
    # several images of one neighbor around one center
    pairs = edge_index.numpy().T
    assert len({tuple(p) for p in pairs}) < len(pairs)
    with torch.no_grad():
        ours = module.descriptors(torch.as_tensor(species), edge_index, edge_vec, len(atoms)).numpy()
    expected = brute_power_spectrum(
        atoms.positions, species, BOX, cutoff, N_MAX, L_MAX, len(SPECIES)
    )
    assert ours.shape == expected.shape == (len(atoms), module.n_features)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_rotation_invariance(model):
    atoms, species = small_cell()
    edge_index, edge_vec = ase_edges(atoms, 7.0)
    rotation = torch.tensor(special_ortho_group.rvs(3, random_state=5))
    before = run(model, species, edge_index, edge_vec, len(atoms))
    after = run(model, species, edge_index, edge_vec @ rotation.T, len(atoms))
    assert np.std(before) > 1e-3  # outputs differ between ions
    np.testing.assert_allclose(after, before, rtol=1e-10, atol=1e-12)


def test_translation_invariance(model):
    atoms, species = small_cell()
    before = run(model, species, *ase_edges(atoms, 7.0), len(atoms))
    moved = atoms.copy()
    moved.positions += np.array([3.7, -12.2, 0.9])
    moved.wrap()
    after = run(model, species, *ase_edges(moved, 7.0), len(atoms))
    np.testing.assert_allclose(after, before, rtol=1e-10, atol=1e-12)


def test_permutation_equivariance(model):
    atoms, species = small_cell()
    edge_index, edge_vec = ase_edges(atoms, 7.0)
    before = run(model, species, edge_index, edge_vec, len(atoms))
    rng = np.random.default_rng(2)
    perm = rng.permutation(len(atoms))  # new node k is old node perm[k]
    new_of_old = torch.as_tensor(np.argsort(perm))
    edge_order = torch.as_tensor(rng.permutation(edge_index.shape[1]))
    after = run(
        model, species[perm], new_of_old[edge_index][:, edge_order], edge_vec[edge_order], len(atoms)
    )
    np.testing.assert_allclose(after, before[perm], rtol=1e-10, atol=1e-12)


def test_supercell_gives_the_same_ions(model):
    atoms, species = small_cell()
    before = run(model, species, *ase_edges(atoms, 7.0), len(atoms))
    big = atoms.repeat((2, 1, 1))  # ions 0…n−1 are the originals, n…2n−1 their copies
    after = run(model, np.tile(species, 2), *ase_edges(big, 7.0), len(big))
    np.testing.assert_allclose(after, np.tile(before, 2), rtol=1e-10, atol=1e-12)


def test_ghost_nodes_are_neighbors_only(model):
    """Periodic images as ghost nodes (index >= n_local), with edges of their own
    that must be ignored, give the same λ as the periodic edge list."""
    atoms, species = small_cell()
    n = len(atoms)
    i, j, d, shift = neighbor_list("ijDS", atoms, 7.0)
    expected = run(model, species, torch.tensor(np.stack([i, j])), torch.tensor(d), n)
    image = np.any(shift != 0, axis=1)
    ghost = n + np.arange(image.sum())  # one ghost node per edge to an image
    neighbor = j.copy()
    neighbor[image] = ghost
    all_species = np.concatenate([species, species[j[image]]])
    ghost_edges = np.stack([ghost, i[image]])  # ghost centers: not outputs
    edge_index = torch.tensor(np.concatenate([np.stack([i, neighbor]), ghost_edges], axis=1))
    edge_vec = torch.tensor(np.concatenate([d, -d[image]]))
    np.testing.assert_allclose(
        run(model, all_species, edge_index, edge_vec, n), expected, rtol=1e-10, atol=1e-12
    )


def test_edges_beyond_the_cutoff_change_nothing(model):
    atoms, species = small_cell()
    n = len(atoms)
    edge_index, edge_vec = ase_edges(atoms, 7.0)
    before = run(model, species, edge_index, edge_vec, n)
    rng = np.random.default_rng(4)
    far = rng.normal(size=(50, 3))
    far *= rng.uniform(7.0, 20.0, size=(50, 1)) / np.linalg.norm(far, axis=1, keepdims=True)
    far[0] = [7.0, 0.0, 0.0]  # exactly at the cutoff
    far_index = rng.integers(0, n, size=(2, 50))
    after = run(
        model, species, torch.cat([edge_index, torch.tensor(far_index)], 1),
        torch.cat([edge_vec, torch.tensor(far)]), n,
    )
    np.testing.assert_array_equal(after, before)


def test_crossing_the_cutoff_is_continuous(model):
    """A neighbor at rc − δ changes λ by ~δ² (f_c ≈ (π δ / 2 rc)²) relative to its
    effect at rc − 1 Å, which is clearly nonzero; at rc + δ it changes nothing."""
    rc = model.cutoff
    direction = np.array([0.6, -0.48, 0.64])
    base = np.array([[2.5, 0.3, -1.0], [-1.2, 3.1, 0.4], [0.2, -0.7, 4.4]])
    species = np.array([0, 1, 0, 1, 1])

    def centre_output(distance: float) -> float:
        vec = torch.tensor(np.vstack([base, distance * direction]))
        edge_index = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 4]])
        return run(model, species, edge_index, vec, 1)[0]

    reference = centre_output(rc + 1.0)  # neighbor 4 absent
    seen = abs(centre_output(rc - 1.0) - reference)
    assert seen > 1e-5
    for delta in (1e-2, 1e-3, 1e-4):  # f_c(rc − δ) / f_c(rc − 1 Å) ≈ δ² / Å² here
        assert abs(centre_output(rc - delta) - reference) < 10 * seen * delta**2
        assert centre_output(rc + delta) == reference


def test_set_standardization_uses_per_species_moments():
    module, _ = make_power_spectrum_model(SPECIES, CHARGES, cutoff=6.0, n_max=2, l_max=2)
    rng = np.random.default_rng(6)
    features = rng.normal(size=(30, module.n_features)) * 3.0 + 1.0
    features[:, 0] = 2.5  # no spread: keeps std 1
    species = rng.integers(0, 2, 30)
    module.set_standardization(torch.tensor(species), torch.tensor(features))
    for s in (0, 1):
        rows = features[species == s]
        std = rows.std(axis=0)
        std[0] = 1.0
        np.testing.assert_allclose(module.feature_mean[s].numpy(), rows.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(module.feature_std[s].numpy(), std, rtol=1e-5)
    with pytest.raises(ValueError, match="no descriptors of species 1"):
        module.set_standardization(torch.zeros(3, dtype=torch.int64), torch.tensor(features[:3]))


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float64", 1e-12)])
def test_saved_model_matches_eager(tmp_path, dtype, tol):
    module, metadata = make_power_spectrum_model(
        SPECIES, CHARGES, cutoff=7.0, n_max=N_MAX, l_max=L_MAX, hidden=(8,), dtype=dtype, seed=3
    )
    assert all(p.dtype == getattr(torch, dtype) for p in module.parameters())
    path = save_model(module, metadata, tmp_path / "ps.pt")
    stored = read_metadata(path)
    assert (stored.kind, stored.n_layers, stored.receptive_field, stored.trained) == (
        "power-spectrum", 1, 7.0, False,
    )
    atoms, species = small_cell()
    i, j, d = neighbor_list("ijD", atoms, 8.0)  # longer than the model's cutoff
    edge_index = np.stack([i, j])
    loaded = evaluate(load_model(path), species, edge_index, d, len(atoms))
    with torch.no_grad():
        eager = module(
            torch.as_tensor(species), torch.tensor(edge_index),
            torch.tensor(d).to(getattr(torch, dtype)), len(atoms),
        )
    assert eager.dtype == getattr(torch, dtype)
    np.testing.assert_allclose(loaded, eager.numpy(), rtol=tol, atol=tol)


def test_saved_model_runs_without_e3nn(tmp_path):
    """The TorchScript file carries the harmonics' code: engines need no e3nn."""
    module, metadata = make_power_spectrum_model(SPECIES, CHARGES, cutoff=7.0, hidden=(8,))
    path = save_model(module, metadata, tmp_path / "ps.pt")
    atoms, species = small_cell()
    edge_index, edge_vec = ase_edges(atoms, 7.0)
    with torch.no_grad():
        expected = module(torch.as_tensor(species), edge_index, edge_vec.float(), len(atoms))
    code = (
        "import sys; sys.modules['e3nn'] = None\n"
        "import numpy as np, torch\n"
        "from localcond.engine.runtime import evaluate, load_model\n"
        f"d = np.load({str(tmp_path / 'in.npz')!r})\n"
        f"out = evaluate(load_model({str(path)!r}), d['species'], d['edge_index'], d['edge_vec'], {len(atoms)})\n"
        "assert 'e3nn' not in sys.modules or sys.modules['e3nn'] is None\n"
        "print(' '.join(repr(float(x)) for x in out))\n"
    )
    np.savez(tmp_path / "in.npz", species=species, edge_index=edge_index.numpy(), edge_vec=edge_vec.numpy())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose([float(x) for x in result.stdout.split()], expected.numpy(), rtol=1e-6, atol=1e-6)
