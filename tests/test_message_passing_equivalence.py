"""MessagePassingConductivity shares its filter network between edges of equal r
and applies the per-layer heads as one product: same outputs as the per-edge
forward it replaced (kept below, verbatim apart from the class names, as the
reference), on the edge lists LAMMPS and ASE produce: both directions of a pair,
one direction only (ghosts), several periodic images of one pair, an atom's own
image, many equal distances (a lattice). Timings are in bench/model_call.py."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from localcond.model.export import save_model
from localcond.model.message_passing import (
    MessagePassingConductivity,
    _equal_r_representatives,
    make_untrained_model,
)
from localcond.engine.runtime import evaluate, load_model

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small graphs: intra-op threads only add waiting (a lot on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the per-edge forward before filters were shared (reference) ------------------

class ReferenceInteraction(torch.nn.Module):
    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.filter_head = torch.nn.Linear(n_features, n_features, bias=False)
        self.update = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, n_features),
        )

    def forward(
        self, h: torch.Tensor, hidden: torch.Tensor, center: torch.Tensor, neighbor: torch.Tensor,
        nodes: torch.Tensor,
    ) -> torch.Tensor:
        """Update the features of ``nodes`` from messages h_j * W(r_ij) along the given
        edges (all of whose centers are in ``nodes``); ``hidden`` is the filter
        network's enveloped hidden layer for those edges."""
        messages = h[neighbor] * self.filter_head(hidden)
        aggregated = torch.zeros_like(h).index_add_(0, center, messages)
        return h.index_add(0, nodes, self.update(aggregated[nodes]))


class ReferenceMessagePassing(torch.nn.Module):
    def __init__(
        self, n_species: int, cutoff: float, n_layers: int = 3, n_features: int = 64,
        n_basis: int = 16,
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.embedding = torch.nn.Embedding(n_species, n_features)
        self.register_buffer("basis_centers", torch.linspace(0.0, cutoff, n_basis))
        self.basis_width = float(cutoff) / n_basis
        # filter network: a hidden layer shared by all layers, then one bias-free
        # linear head per layer. The envelope multiplies the hidden layer, which
        # scales each (linear) head's output by it at a third of the cost.
        self.filter_hidden = torch.nn.Sequential(torch.nn.Linear(n_basis, n_features), torch.nn.SiLU())
        self.interactions = torch.nn.ModuleList([ReferenceInteraction(n_features) for _ in range(n_layers)])
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, 1),
        )

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        center = edge_index[0]
        neighbor = edge_index[1]
        n_nodes = species.shape[0]
        n_layers = len(self.interactions)
        # Work only where it reaches an output: layer L must update the output
        # nodes, layer L-1 also their neighbors, and so on back to layer 1.
        needed = torch.arange(n_nodes, device=species.device) < n_local
        node_sets: List[torch.Tensor] = []
        edge_sets: List[torch.Tensor] = []
        for _ in range(n_layers):
            edge_mask = needed[center]
            node_sets.append(needed)
            edge_sets.append(edge_mask)
            needed = needed.index_fill(0, neighbor[edge_mask], True)
        node_sets.reverse()
        edge_sets.reverse()

        used = torch.nonzero(edge_sets[0]).squeeze(1)  # layer 1 uses the most edges
        center = center[used]
        neighbor = neighbor[used]
        r = torch.linalg.vector_norm(edge_vec[used], dim=1)
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        envelope = torch.where(r < self.cutoff, envelope, torch.zeros_like(envelope))
        offsets = (r.unsqueeze(1) - self.basis_centers.unsqueeze(0)) / self.basis_width
        basis = torch.exp(-0.5 * offsets * offsets)
        hidden = self.filter_hidden(basis) * envelope.unsqueeze(1)

        h = self.embedding(species)
        for layer, interaction in enumerate(self.interactions):
            edges = torch.nonzero(edge_sets[layer][used]).squeeze(1)
            nodes = torch.nonzero(node_sets[layer]).squeeze(1)
            if edges.shape[0] < used.shape[0]:
                h = interaction(h, hidden[edges], center[edges], neighbor[edges], nodes)
            else:
                h = interaction(h, hidden, center, neighbor, nodes)
        return self.readout(h[:n_local]).squeeze(1)


# --- graphs -----------------------------------------------------------------------

def _periodic(n_atoms, box, cutoff, seed):
    """Random positions in a cubic box, all ASE edges ('ijD': both directions of
    every pair, every periodic image within the cutoff)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(positions=rng.uniform(0, box, (n_atoms, 3)), cell=[box] * 3, pbc=True)
    i, j, d = neighbor_list("ijD", atoms, cutoff, self_interaction=False)
    species = rng.integers(0, 2, n_atoms)
    return species, np.stack([i, j]), d, n_atoms


def dense_periodic(cutoff):
    return _periodic(60, 2.6 * cutoff, cutoff, seed=1)


def small_box(cutoff):
    """Box smaller than the cutoff: each pair appears through several images with
    different r, and every atom is its own neighbor through its images."""
    return _periodic(5, 0.7 * cutoff, cutoff, seed=2)


def lattice(cutoff):
    """A simple cubic lattice (exact coordinates): many unrelated edges share r."""
    a = cutoff / 2.5
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    atoms = Atoms(positions=grid, cell=[4 * a] * 3, pbc=True)
    i, j, d = neighbor_list("ijD", atoms, cutoff, self_interaction=False)
    return np.arange(len(grid)) % 2, np.stack([i, j]), d, len(grid)


def _open_cluster(cutoff, n_center_shells, seed):
    """One rank's view of a bigger system: local atoms in a cube, ghosts around it
    up to 3 cutoffs away, edges (non-periodic) only from local atoms and ghosts
    within ``n_center_shells`` cutoffs of the cube; the outermost centers' edges
    to ghosts that are not centers have no reverse edge."""
    rng = np.random.default_rng(seed)
    side = 2.5 * cutoff
    positions = rng.uniform(-3 * cutoff, side + 3 * cutoff, (900, 3))
    outside = np.max(np.maximum(-positions, positions - side), axis=1)
    order = np.argsort(outside > 0, kind="stable")  # local nodes first
    positions, outside = positions[order], outside[order]
    n_local = int(np.sum(outside <= 0))
    vectors = positions[None, :, :] - positions[:, None, :]  # [i, j] = r_j - r_i
    close = np.einsum("ijk,ijk->ij", vectors, vectors) < cutoff * cutoff
    np.fill_diagonal(close, False)
    close &= (outside <= n_center_shells * cutoff)[:, None]
    i, j = np.nonzero(close)
    return rng.integers(0, 2, len(positions)), np.stack([i, j]), vectors[i, j], n_local


def ghosts_local_centers(cutoff):
    return _open_cluster(cutoff, 0, seed=3)


def ghosts_lammps_like(cutoff):
    """Centers out to 2 cutoffs (what a 3-layer model needs): later layers use
    fewer edges than the first."""
    return _open_cluster(cutoff, 2, seed=4)


def inexact_partners(cutoff):
    """Reverse vectors that are not exact negations (as LAMMPS ghost images give
    in float64): the r of a pair differs in the last bit, edges cannot share."""
    species, edge_index, edge_vec, n = dense_periodic(cutoff)
    edge_vec = edge_vec.copy()
    flip = edge_index[0] > edge_index[1]
    edge_vec[flip] = np.nextafter(edge_vec[flip], np.inf)
    return species, edge_index, edge_vec, n


def no_edges(cutoff):
    return np.array([0, 1, 1]), np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3)), 2


GRAPHS = [dense_periodic, small_box, lattice, ghosts_local_centers, ghosts_lammps_like,
          inexact_partners, no_edges]


def _tensors(graph, dtype):
    species, edge_index, edge_vec, n_local = graph
    return (torch.as_tensor(species, dtype=torch.int64),
            torch.as_tensor(edge_index, dtype=torch.int64).reshape(2, -1),
            torch.as_tensor(edge_vec, dtype=torch.float64).reshape(-1, 3).to(dtype), int(n_local))


def _models(n_layers, dtype, n_features=16, cutoff=4.0, seed=0):
    torch.manual_seed(seed)
    reference = ReferenceMessagePassing(2, cutoff, n_layers, n_features).to(dtype).eval()
    model = MessagePassingConductivity(2, cutoff, n_layers, n_features).to(dtype).eval()
    model.load_state_dict(reference.state_dict())  # strict: the layout is unchanged
    return reference, model


def _assert_agree(new, old, dtype):
    """Agreement to TOLERANCE relative to the largest output."""
    assert new.shape == old.shape and new.dtype == old.dtype
    if old.numel():
        scale = max(float(old.abs().max()), 1e-30)
        assert float((new - old).abs().max()) <= TOLERANCE[dtype] * scale


def _edges_per_layer(edge_index, n_nodes, n_local, n_layers):
    """How many edges each layer uses (as the model restricts them)."""
    needed = np.arange(n_nodes) < n_local
    counts = []
    for _ in range(n_layers):
        mask = needed[edge_index[0]]
        counts.append(int(mask.sum()))
        needed = needed.copy()
        needed[edge_index[1][mask]] = True
    return counts[::-1]


# --- tests --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n_layers", [1, 3])
@pytest.mark.parametrize("make_graph", GRAPHS, ids=lambda f: f.__name__)
def test_outputs_equal_the_per_edge_forward(make_graph, n_layers, dtype):
    reference, model = _models(n_layers, dtype)
    inputs = _tensors(make_graph(reference.cutoff), dtype)
    with torch.no_grad():
        _assert_agree(model(*inputs), reference(*inputs), dtype)


def test_graphs_cover_the_edge_cases():
    """The graphs above contain what they are meant to contain."""
    cutoff = 4.0
    _, edge_index, _, _ = small_box(cutoff)
    assert np.any(edge_index[0] == edge_index[1])  # an atom's own images
    pairs = edge_index[0] * 1000 + edge_index[1]
    assert len(np.unique(pairs)) < len(pairs)  # several images of one pair
    for make in (ghosts_local_centers, ghosts_lammps_like):
        species, edge_index, _, n_local = make(cutoff)
        assert n_local >= 5 and edge_index[1].max() >= n_local
        listed = set(zip(*edge_index.tolist()))
        assert any((j, i) not in listed for i, j in listed)  # one-directional edges
    species, edge_index, _, n_local = ghosts_local_centers(cutoff)
    assert edge_index[0].max() < n_local  # only local centers
    # a 3-layer model uses fewer edges in later layers: per-layer head rows
    species, edge_index, _, n_local = ghosts_lammps_like(cutoff)
    first, second, last = _edges_per_layer(edge_index, len(species), n_local, 3)
    assert first > second > last > 0 and first < edge_index.shape[1]
    _, _, edge_vec, _ = lattice(cutoff)
    r = np.linalg.norm(edge_vec, axis=1)
    assert len(np.unique(r)) < len(r) / 10  # many unrelated edges with equal r


def test_equal_r_representatives():
    cutoff = 4.0
    for make in GRAPHS:
        _, _, edge_vec, _ = make(cutoff)
        for dtype in (torch.float32, torch.float64):
            r = torch.linalg.vector_norm(torch.as_tensor(edge_vec).reshape(-1, 3).to(dtype), dim=1)
            reps, inverse = _equal_r_representatives(r)
            assert torch.equal(r[reps][inverse], r)  # every edge shares with an equal r
            assert len(torch.unique(reps)) == len(reps)
            assert torch.equal(reps[inverse[reps]], reps)  # representatives represent themselves
    # ASE lists both directions as exact negations: about half the edges are evaluated
    _, _, edge_vec, _ = dense_periodic(cutoff)
    r = torch.linalg.vector_norm(torch.as_tensor(edge_vec), dim=1)
    assert len(_equal_r_representatives(r)[0]) < 0.6 * len(r)
    # distinct r share nothing, NaN equals nothing, inf equals inf
    for dtype in (torch.float32, torch.float64):
        reps, inverse = _equal_r_representatives(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=dtype))
        assert reps.tolist() == [0, 1, 2, 3] and inverse.tolist() == [0, 1, 2, 3]
        reps, inverse = _equal_r_representatives(torch.tensor([math.nan, 1.0, math.nan], dtype=dtype))
        assert reps.tolist() == [0, 1, 2]
        reps, inverse = _equal_r_representatives(torch.tensor([math.inf, 1.0, math.inf], dtype=dtype))
        assert len(reps) == 2 and inverse[0] == inverse[2]


def test_parameter_gradients_equal_the_per_edge_forward():
    """Training differentiates with respect to the parameters: same gradients."""
    reference, model = _models(3, torch.float64)
    inputs = _tensors(ghosts_lammps_like(reference.cutoff), torch.float64)
    reference(*inputs).square().sum().backward()
    model(*inputs).square().sum().backward()
    grads = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        assert torch.allclose(grads[name].grad, p.grad, rtol=1e-12, atol=1e-14), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torchscript_export_gives_the_same_outputs(tmp_path, dtype):
    module, metadata = make_untrained_model(["A", "B"], [1.0, -1.0], cutoff=4.0, n_layers=3,
                                            n_features=16, dtype=dtype)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    reference = ReferenceMessagePassing(2, 4.0, 3, 16).to(torch_dtype).eval()
    reference.load_state_dict(module.state_dict())
    assert any(k.endswith("filter_head.weight") for k in module.state_dict())
    loaded = load_model(save_model(module, metadata, tmp_path / "mp.pt"))
    scripted = torch.jit.script(module)
    for make in (dense_periodic, small_box, ghosts_lammps_like):
        graph = make(4.0)
        inputs = _tensors(graph, torch_dtype)
        with torch.no_grad():
            expected = reference(*inputs)
            _assert_agree(scripted(*inputs), expected, torch_dtype)
        got = torch.as_tensor(evaluate(loaded, *graph)).to(torch_dtype)
        _assert_agree(got, expected, torch_dtype)
