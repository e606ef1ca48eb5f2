"""A message-passing network for the local molar conductivity.

SchNet-style continuous-filter convolutions: species embeddings h_i are
updated ``n_layers`` times with messages h_j · W_l(r_ij) from neighbors within
the cutoff, where the filters W_l share the hidden layer of a small network of a
Gaussian expansion of r_ij, times a cosine envelope (so messages vanish
smoothly at the cutoff); a per-node readout gives λ_i in S cm² mol⁻¹. Receptive field: n_layers × cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import torch

from localcond.model.contract import ModelMetadata

KIND = "message-passing"


class Interaction(torch.nn.Module):
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


class MessagePassingConductivity(torch.nn.Module):
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
        self.interactions = torch.nn.ModuleList([Interaction(n_features) for _ in range(n_layers)])
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


def make_untrained_model(
    species: Sequence[str], charges: Sequence[float], cutoff: float = 10.0, n_layers: int = 3,
    n_features: int = 64, dtype: str = "float32", seed: int = 0,
) -> tuple[MessagePassingConductivity, ModelMetadata]:
    """The architecture with random weights: realistic cost, meaningless values.

    Used by benchmarks and by tests of multi-layer plumbing; its metadata say
    ``trained: false``.
    """
    torch.manual_seed(seed)
    module = MessagePassingConductivity(len(species), cutoff, n_layers, n_features)
    metadata = ModelMetadata(
        species=tuple(species),
        charges=tuple(float(q) for q in charges),
        cutoff=float(cutoff),
        n_layers=n_layers,
        dtype=dtype,
        kind=KIND,
        description=(
            f"UNTRAINED message-passing network with random weights (seed {seed}, "
            f"{n_layers} layers, {n_features} features): realistic cost, meaningless values"
        ),
        trained=False,
    )
    return module, metadata
