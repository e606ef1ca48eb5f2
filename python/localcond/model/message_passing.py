"""A message-passing network for the local molar conductivity.

SchNet-style continuous-filter convolutions: species embeddings h_i are
updated ``n_layers`` times with messages h_j · W(r_ij) from neighbors within
the cutoff, where W is a small network of a Gaussian expansion of r_ij times
a cosine envelope (so messages vanish smoothly at the cutoff); a per-node
readout gives λ_i in S cm² mol⁻¹. Receptive field: n_layers × cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from localcond.model.contract import ModelMetadata

KIND = "message-passing"


class Interaction(torch.nn.Module):
    def __init__(self, n_features: int, n_basis: int) -> None:
        super().__init__()
        self.filter = torch.nn.Sequential(
            torch.nn.Linear(n_basis, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, n_features),
        )
        self.update = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, n_features),
        )

    def forward(
        self, h: torch.Tensor, basis: torch.Tensor, center: torch.Tensor, neighbor: torch.Tensor
    ) -> torch.Tensor:
        messages = h[neighbor] * self.filter(basis)
        aggregated = torch.zeros_like(h).index_add(0, center, messages)
        return h + self.update(aggregated)


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
        self.interactions = torch.nn.ModuleList(
            [Interaction(n_features, n_basis) for _ in range(n_layers)]
        )
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, 1),
        )

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        center = edge_index[0]
        neighbor = edge_index[1]
        r = torch.linalg.vector_norm(edge_vec, dim=1)
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        envelope = torch.where(r < self.cutoff, envelope, torch.zeros_like(envelope))
        offsets = (r.unsqueeze(1) - self.basis_centers.unsqueeze(0)) / self.basis_width
        basis = torch.exp(-0.5 * offsets * offsets) * envelope.unsqueeze(1)
        h = self.embedding(species)
        for interaction in self.interactions:
            h = interaction(h, basis, center, neighbor)
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
