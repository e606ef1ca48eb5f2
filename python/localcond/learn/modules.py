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


class StackedLinear(torch.nn.Module):
    """k linear layers of the same shape applied to k stacked inputs [k, n, in] at once."""

    def __init__(self, layers: List[torch.nn.Linear], activation: bool) -> None:
        super().__init__()
        self.register_buffer("weight_t", torch.stack([layer.weight.detach().t() for layer in layers]))
        self.register_buffer("bias", torch.stack([layer.bias.detach() for layer in layers]).unsqueeze(1))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.baddbmm(self.bias, x, self.weight_t)
        return torch.nn.functional.silu(y) if self.activation else y


class SharedDescriptorEnsemble(torch.nn.Module):
    """The mean of k members λ = offset_k + scale_k · readout_k(p) that share one
    parameter-free descriptor p (power spectra of the same cutoff and basis): p is
    computed once per call, and the members' MLPs of one species run as one batched
    product per layer (inference only: the weights are copied into buffers). The
    outputs are the members' own, to float rounding. ``members`` are
    :class:`Scaled` around power-spectrum modules (``descriptors``, ``feature_mean``,
    ``feature_std``, ``mlps``: per species Linear–SiLU–…–Linear); the first member's
    ``descriptors`` serves all."""

    def __init__(self, members: List[Scaled]) -> None:
        super().__init__()
        inner = [m.inner for m in members]
        self.descriptor = inner[0]
        self.register_buffer("offsets", torch.stack([m.offset for m in members]).view(-1, 1))
        self.register_buffer("scales", torch.stack([m.scale for m in members]).view(-1, 1))
        self.register_buffer("feature_mean", torch.stack([i.feature_mean for i in inner], 1).unsqueeze(2))
        self.register_buffer("feature_std", torch.stack([i.feature_std for i in inner], 1).unsqueeze(2))
        heads = []
        for s in range(len(inner[0].mlps)):
            linears = [[layer for layer in i.mlps[s] if isinstance(layer, torch.nn.Linear)] for i in inner]
            n_layers = len(linears[0])
            heads.append(torch.nn.ModuleList([
                StackedLinear([member[depth] for member in linears], activation=depth < n_layers - 1)
                for depth in range(n_layers)]))
        self.heads = torch.nn.ModuleList(heads)

    @torch.jit.export
    def members(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        features = self.descriptor.descriptors(species, edge_index, edge_vec, n_local)
        local = species[:n_local]
        out = torch.zeros(self.offsets.shape[0], n_local, dtype=features.dtype, device=features.device)
        for s, head in enumerate(self.heads):
            nodes = torch.nonzero(local == s).squeeze(1)
            # [k, n_s, F]: each member's standardisation of the same descriptors
            x = (features[nodes].unsqueeze(0) - self.feature_mean[s]) / self.feature_std[s]
            for layer in head:
                x = layer(x)
            out = out.index_copy(1, nodes, x.squeeze(2))
        return self.offsets + self.scales * out

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.members(species, edge_index, edge_vec, n_local).mean(dim=0)
