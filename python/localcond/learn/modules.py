"""Wrappers that keep a trained model one TorchScript module on the contract
(DESIGN.md §3): output scaling, a sum of two models (labels fit + system-level
correction) and an ensemble whose forward is the members' mean."""

from __future__ import annotations

from typing import List

import torch


class Scaled(torch.nn.Module):
    """λ = offset + scale · inner(...), so the inner network works in units of order one.
    ``offset`` and ``scale`` in S cm² mol⁻¹."""

    def __init__(self, inner: torch.nn.Module, offset: float, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("offset", torch.tensor(float(offset)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.offset + self.scale * self.inner(species, edge_index, edge_vec, n_local)


class Sum(torch.nn.Module):
    """λ = base(...) + correction(...)."""

    def __init__(self, base: torch.nn.Module, correction: torch.nn.Module) -> None:
        super().__init__()
        self.base = base
        self.correction = correction

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return (self.base(species, edge_index, edge_vec, n_local)
                + self.correction(species, edge_index, edge_vec, n_local))


class Ensemble(torch.nn.Module):
    """The mean of k members; :meth:`members` returns every member's output [k, n_local]."""

    def __init__(self, members: List[torch.nn.Module]) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(members)

    @torch.jit.export
    def members(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        for model in self.models:
            outputs.append(model(species, edge_index, edge_vec, n_local))
        return torch.stack(outputs)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.members(species, edge_index, edge_vec, n_local).mean(dim=0)


class SharedDescriptorEnsemble(torch.nn.Module):
    """The mean of k members λ = offset_k + scale_k · readout_k(p) that share one
    parameter-free descriptor p (power spectra of the same cutoff and basis): p is
    computed once per call instead of k times, the outputs are the members' own.
    ``members`` are :class:`Scaled` around modules with ``descriptors`` and
    ``readout``; the first member's ``descriptors`` serves all."""

    def __init__(self, members: List[Scaled]) -> None:
        super().__init__()
        self.descriptor = members[0].inner
        self.readouts = torch.nn.ModuleList([m.inner for m in members])
        self.register_buffer("offsets", torch.stack([m.offset for m in members]))
        self.register_buffer("scales", torch.stack([m.scale for m in members]))

    @torch.jit.export
    def members(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        features = self.descriptor.descriptors(species, edge_index, edge_vec, n_local)
        local = species[:n_local]
        outputs: List[torch.Tensor] = []
        for k, readout in enumerate(self.readouts):
            outputs.append(self.offsets[k] + self.scales[k] * readout.readout(local, features))
        return torch.stack(outputs)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.members(species, edge_index, edge_vec, n_local).mean(dim=0)
