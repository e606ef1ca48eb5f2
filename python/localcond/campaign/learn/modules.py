"""Wrappers that keep a trained model one TorchScript module on the contract
(doc/design.md §3): output scaling, a sum of two models (labels fit + system-level
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
    computed once per call, and the members' MLPs of one species run as batched
    products (inference only: the weights are copied into buffers). Each member's
    standardisation (p − μ_k)/σ_k is folded into its first layer,
    W_k (p − μ_k)/σ_k + b_k = (W_k/σ_k) p + (b_k − (W_k/σ_k) μ_k), computed in float64,
    so the first layers of all members are one product [n, F] × [F, k·H] and no
    standardised copy of p is made. The outputs are the members' own, to float
    rounding. ``members`` are :class:`Scaled` around power-spectrum modules
    (``descriptors``, ``feature_mean``, ``feature_std``, ``mlps``: per species
    Linear–SiLU–…–Linear); the first member's ``descriptors`` serves all."""

    def __init__(self, members: List[Scaled]) -> None:
        super().__init__()
        inner = [m.inner for m in members]
        self.descriptor = inner[0]
        self.n_members = len(members)
        self.register_buffer("offsets", torch.stack([m.offset for m in members]).view(-1, 1))
        self.register_buffer("scales", torch.stack([m.scale for m in members]).view(-1, 1))
        firsts = []
        heads = []
        for s in range(len(inner[0].mlps)):
            linears = [[layer for layer in i.mlps[s] if isinstance(layer, torch.nn.Linear)] for i in inner]
            firsts.append(FoldedFirstLayer([member[0] for member in linears],
                                           [i.feature_mean[s] for i in inner], [i.feature_std[s] for i in inner],
                                           activation=len(linears[0]) > 1))
            heads.append(torch.nn.ModuleList([
                StackedLinear([member[depth] for member in linears], activation=depth < len(linears[0]) - 1)
                for depth in range(1, len(linears[0]))]))
        self.firsts = torch.nn.ModuleList(firsts)
        self.heads = torch.nn.ModuleList(heads)

    @torch.jit.export
    def descriptors(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                    n_local: int) -> torch.Tensor:
        """The shared descriptor p [n_local, F] that every member reads (the features of the
        model's descriptor domain, localcond.engine.domain)."""
        return self.descriptor.descriptors(species, edge_index, edge_vec, n_local)

    @torch.jit.export
    def members(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        features = self.descriptor.descriptors(species, edge_index, edge_vec, n_local)
        local = species[:n_local]
        out = torch.zeros(self.n_members, n_local, dtype=features.dtype, device=features.device)
        for s, (first, head) in enumerate(zip(self.firsts, self.heads)):
            nodes = torch.nonzero(local == s).squeeze(1)
            x = first(features[nodes])  # [k, n_s, H]
            for layer in head:
                x = layer(x)
            out = out.index_copy(1, nodes, x.squeeze(2))
        return self.offsets + self.scales * out

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return self.members(species, edge_index, edge_vec, n_local).mean(dim=0)


class FoldedFirstLayer(torch.nn.Module):
    """The first layers of k members, each applied to its own standardisation
    (x − μ_k)/σ_k of the same input x [n, F], as one product: output [k, n, H]
    (``activation``: SiLU). Folding in float64 keeps the rounding of the
    standardised form."""

    def __init__(self, layers: List[torch.nn.Linear], means: List[torch.Tensor], stds: List[torch.Tensor],
                 activation: bool) -> None:
        super().__init__()
        weights, biases = [], []
        for layer, mean, std in zip(layers, means, stds):
            w = layer.weight.detach().double() / std.detach().double()  # [H, F]
            weights.append(w)
            biases.append(layer.bias.detach().double() - w @ mean.detach().double())
        dtype = layers[0].weight.dtype
        self.n_members = len(layers)
        self.hidden = layers[0].out_features  # explicit: a view with -1 is ambiguous for no rows
        self.register_buffer("weight_t", torch.cat(weights, 0).t().contiguous().to(dtype))  # [F, k·H]
        self.register_buffer("bias", torch.cat(biases, 0).to(dtype))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x, self.weight_t)
        y = y.view(x.shape[0], self.n_members, self.hidden).transpose(0, 1)
        return torch.nn.functional.silu(y) if self.activation else y
