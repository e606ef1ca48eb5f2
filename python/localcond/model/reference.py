"""The reference model: an analytic function of the environment, exported
through the same TorchScript path as trained models, so that an installation
can be checked against a brute-force sum (it is *not* a conductivity model).

    λ_i = Σ_{j≠i, r_ij<RC} q_i q_j · ½[cos(π r_ij / RC) + 1]

q in e, r in Å; the sum runs over all other atoms and periodic images
(an atom's own image counts when RC exceeds a box length). One layer, so
the receptive field is RC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from localcond.model.contract import ModelMetadata

KIND = "reference-cosine-pair"


class CosinePairReference(torch.nn.Module):
    def __init__(self, charges: Sequence[float], cutoff: float) -> None:
        super().__init__()
        self.register_buffer("charges", torch.tensor(list(charges), dtype=torch.float64))
        self.cutoff = float(cutoff)

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        center = edge_index[0]
        neighbor = edge_index[1]
        r = torch.linalg.vector_norm(edge_vec, dim=1)
        weight = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        weight = torch.where(r < self.cutoff, weight, torch.zeros_like(weight))
        q = self.charges.to(edge_vec.dtype)[species]
        pair = q[center] * q[neighbor] * weight
        keep = center < n_local
        out = torch.zeros(n_local, dtype=edge_vec.dtype, device=edge_vec.device)
        return out.index_add(0, center[keep], pair[keep])


def make_reference_model(
    species: Sequence[str], charges: Sequence[float], cutoff: float
) -> tuple[CosinePairReference, ModelMetadata]:
    metadata = ModelMetadata(
        species=tuple(species),
        charges=tuple(float(q) for q in charges),
        cutoff=float(cutoff),
        n_layers=1,
        dtype="float64",
        kind=KIND,
        purpose="test",
        description=(
            "Analytic test function lambda_i = sum_{j != i, r_ij < RC} q_i q_j "
            "(cos(pi r_ij / RC) + 1) / 2 for checking an installation; not a trained "
            "conductivity model"
        ),
    )
    return CosinePairReference(metadata.charges, metadata.cutoff), metadata
