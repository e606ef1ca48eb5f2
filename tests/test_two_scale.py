"""The two-scale model (localcond.model.two_scale): its averaged spectra against a
brute-force sum over periodic images, its relative species channels against a
relabelling of the species, and the fix against offline prediction on 1 and 2
ranks (spectra of ghost atoms)."""

import numpy as np
import pytest
import torch

from helpers import System, run_lmp
from localcond.engine.neighbors import periodic_edges
from localcond.model.contract import read_metadata
from localcond.model.export import save_model
from localcond.model.two_scale import make_two_scale_model, relative_channels

RC, R = 4.0, 7.0


def salt(seed: int, n: int = 24, box: float = 13.0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) * box, np.arange(n) % 2, np.eye(3) * box


def test_relative_channels_swap_the_species_of_a_second_centre():
    """S = 2, n_max 1, l_max 0: features (a, b) = (0,0), (0,1), (1,1). Seen from species 1
    its own channel comes first: (1,1) lands at (0,0) and (0,0) at (1,1)."""
    table = relative_channels(2, 1, 0)
    assert table[0].tolist() == [0, 1, 2]
    assert table[1].tolist() == [2, 1, 0]
    for c in range(3):  # a permutation for any number of species
        assert sorted(relative_channels(3, 2, 1)[c].tolist()) == list(range(relative_channels(3, 2, 1).shape[1]))


def test_mean_spectra_equal_a_brute_force_sum_over_images():
    """p̄_i = mean over every ion (and periodic image) within R of i, i itself included,
    of its relative-channel spectrum; computed here from each ion's own spectrum."""
    x, species, cell = salt(1)
    module, _ = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC)
    s = torch.as_tensor(species)
    ei, ev = periodic_edges(x, cell, (True,) * 3, R)
    own, around = module.features(s, torch.as_tensor(ei), torch.as_tensor(ev), len(x))
    p = module.spectrum.descriptors(s, torch.as_tensor(ei), torch.as_tensor(ev), len(x)).numpy()
    rel = np.stack([p[j][module.relative[species[j]].numpy()] for j in range(len(x))])
    np.testing.assert_allclose(own.numpy(), p)
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3)).reshape(3, -1).T @ cell
    for i in range(len(x)):
        total, count = rel[i].copy(), 1
        for j in range(len(x)):
            for shift in shifts:
                d = np.linalg.norm(x[j] + shift - x[i])
                if 0 < d < R:
                    total += rel[j]
                    count += 1
        np.testing.assert_allclose(around[i].numpy(), total / count, rtol=1e-10, atol=1e-12)


def test_means_by_species_equal_a_brute_force_sum_over_images():
    """around="by_species": for each species t, the mean over the ions of species t (and
    periodic images) within R of i, i itself included when it is of species t, of their
    spectra in absolute channels; a species with no ion within R gives zeros."""
    x, species, cell = salt(3)
    species[0] = 0
    species[1:] = np.where(np.arange(1, len(x)) % 3 == 0, 0, 1)
    x[0] = [6.5, 6.5, 6.5]  # one A ion far from every other A: its A-mean is itself
    module, _ = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC, around="by_species")
    assert module.n_around == 2 * module.n_features
    s = torch.as_tensor(species)
    ei, ev = periodic_edges(x, cell, (True,) * 3, R)
    _, around = module.features(s, torch.as_tensor(ei), torch.as_tensor(ev), len(x))
    p = module.spectrum.descriptors(s, torch.as_tensor(ei), torch.as_tensor(ev), len(x)).numpy()
    f = module.n_features
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3)).reshape(3, -1).T @ cell
    for i in range(len(x)):
        for t in (0, 1):
            total, count = np.zeros(f), 0
            for j in range(len(x)):
                if species[j] != t:
                    continue
                for shift in shifts:
                    d = np.linalg.norm(x[j] + shift - x[i])
                    if d < R and (d > 0 or j == i):
                        total += p[j]
                        count += 1
            expected = total / count if count else np.zeros(f)
            np.testing.assert_allclose(around[i, t * f:(t + 1) * f].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_relabelling_the_species_keeps_the_relative_mean():
    """Swap which species every ion is: each ion's relative-channel mean is unchanged
    (own species first either way), its own spectrum is not."""
    x, species, cell = salt(2)
    module, _ = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC)
    ei, ev = (torch.as_tensor(a) for a in periodic_edges(x, cell, (True,) * 3, R))
    own, around = module.features(torch.as_tensor(species), ei, ev, len(x))
    own2, around2 = module.features(torch.as_tensor(1 - species), ei, ev, len(x))
    np.testing.assert_allclose(around2.numpy(), around.numpy(), rtol=1e-10)
    assert not np.allclose(own2.numpy(), own.numpy())


@pytest.mark.parametrize("around", ["relative", "by_species"])
def test_members_equal_the_formula_on_the_features(around):
    """members() sums U · p̄_i pair by pair after projecting each spectrum on the weights;
    it must equal b + W · p_i + U · p̄_i written out on features(), for every member."""
    x, species, cell = salt(4)
    module, _ = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC, members=3, around=around)
    rng = np.random.default_rng(5)
    bias = torch.as_tensor(rng.normal(size=(3, 2)))
    w = torch.as_tensor(rng.normal(size=(3, 2, module.n_features)))
    u = torch.as_tensor(rng.normal(size=(3, 2, module.n_around)))
    module.set_weights(bias, w, u)
    s = torch.as_tensor(species)
    ei, ev = (torch.as_tensor(a) for a in periodic_edges(x, cell, (True,) * 3, R))
    own, mean = module.features(s, ei, ev, len(x))
    expected = np.array([[float(bias[k, species[i]] + w[k, species[i]] @ own[i] + u[k, species[i]] @ mean[i])
                          for i in range(len(x))] for k in range(3)])
    np.testing.assert_allclose(module.members(s, ei, ev, len(x)).numpy(), expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("around", ["relative", "by_species"])
def test_nodes_beyond_the_outer_cutoff_change_nothing(around):
    """Ghost-like nodes (with their own edges) farther than R from every output node are
    not read: λ of the output nodes is the same with and without them (the model only
    computes spectra of the nodes it needs)."""
    rng = np.random.default_rng(6)
    inside = rng.random((16, 3)) * 10.0  # output nodes
    near = rng.random((20, 3)) * 24.0 - 7.0  # within R + rc of the output nodes
    far = rng.random((40, 3)) * 10.0 + [40.0, 0.0, 0.0]  # beyond R of every output node
    module, _ = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC, members=2, around=around)
    module.set_weights(torch.as_tensor(rng.normal(size=(2, 2))),
                       torch.as_tensor(rng.normal(size=(2, 2, module.n_features))),
                       torch.as_tensor(rng.normal(size=(2, 2, module.n_around))))
    cell = np.eye(3) * 1000.0
    out = []
    for x in (np.concatenate([inside, near]), np.concatenate([inside, near, far])):
        species = torch.as_tensor(np.arange(len(x)) % 2)
        ei, ev = (torch.as_tensor(a) for a in periodic_edges(x, cell, (False,) * 3, R))
        assert len(x) == 36 or bool((ei[0] >= 36).any())  # the far nodes come with edges of their own
        out.append(module.members(species, ei, ev, len(inside)).numpy())
    np.testing.assert_array_equal(out[1], out[0])


def test_the_receptive_field_is_r_plus_rc():
    """The metadata's receptive field R + rc is honest: an atom moved from just beyond
    R + rc of node 0 to farther away leaves λ_0 unchanged (edges of every node given, as
    offline); moved to within it, λ_0 changes."""
    module, metadata = make_two_scale_model(["A", "B"], [1.0, -1.0], cutoff=R, inner_cutoff=RC)
    assert metadata.receptive_field == R + RC and metadata.inner_cutoff == RC
    rng = np.random.default_rng(8)
    module.set_weights(torch.as_tensor(rng.normal(size=(1, 2))),
                       torch.as_tensor(rng.normal(size=(1, 2, module.n_features))),
                       torch.as_tensor(rng.normal(size=(1, 2, module.n_around))))
    # a chain along x: node 0, a neighbour at 6 Å (within R), and a probe
    def lam0(probe_x: float) -> float:
        x = np.array([[0.0, 0, 0], [6.0, 0, 0], [probe_x, 0, 0]])
        ei, ev = periodic_edges(x, np.eye(3) * 1000.0, (False,) * 3, R)
        return float(module(torch.as_tensor([0, 1, 0]), torch.as_tensor(ei), torch.as_tensor(ev), 1)[0])

    assert lam0(R + RC + 0.1) == lam0(R + RC + 3.0)
    assert lam0(6.0 + RC - 0.1) != lam0(R + RC + 3.0)


@pytest.fixture(scope="module", params=["relative", "by_species"])
def model(tmp_path_factory, request):
    module, metadata = make_two_scale_model(["Li", "PF6"], [1.0, -1.0], cutoff=R, inner_cutoff=RC, members=2,
                                            around=request.param)
    rng = np.random.default_rng(0)
    module.set_weights(torch.as_tensor(rng.normal(size=(2, 2))),
                       torch.as_tensor(rng.normal(scale=0.1, size=(2, 2, module.n_features))),
                       torch.as_tensor(rng.normal(scale=0.1, size=(2, 2, module.n_around))))
    return str(save_model(module, metadata, tmp_path_factory.mktemp("m") / "two_scale.pt"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2])
def test_fix_equals_offline_prediction(tmp_path, model, nprocs):
    """Receptive field R + rc = 11 Å: ghosts out to 11 Å + skin, whose edges the fix builds
    only within rc (nodes other than the outputs), carry the spectra that enter the local
    ions' means (both ways of averaging them); the fix's λ equals `localcond predict` on
    the dumped frames, whose edges all reach R."""
    from test_fix_lammps import SPECIES, assert_fix_matches_offline

    assert read_metadata(model).receptive_field == R + RC
    system = System(model=model, comm_cutoff=R + RC + 2.0, steps=60, nevery=20, box=26.0, n_per_type=40)
    run_lmp(tmp_path, system.input_text(), nprocs=nprocs)
    assert_fix_matches_offline(tmp_path, model, SPECIES)
