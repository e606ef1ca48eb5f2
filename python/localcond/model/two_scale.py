"""Two-scale linear model: an ion's own environment and the environments around it.

For ion i of species s_i, with p_i its power spectrum within the inner cutoff rc
(:class:`~localcond.model.power_spectrum.PowerSpectrumConductivity`, all species
channels) and p̄_i the mean of the power spectra of all ions within the outer
cutoff R of i, i included, each written in *relative* species channels,

    λ_i = b_{k,s_i} + W_{k,s_i} · p_i + U_{k,s_i} · p̄_i      (member k; λ = mean over k)

in S cm² mol⁻¹. Two ways to average the neighbours' spectra (``around``):

- ``relative`` (default): one mean over all neighbours, in relative channels: ion
  j's density channel of species s is re-indexed as (s − s_j) mod S, so that "same
  as me" and "other than me" line up when spectra of ions of different species are
  averaged (for a 1:1 salt: own species, then counter-ions); p̄ has F features;
- ``by_species``: one mean per neighbour species t, over the neighbours of species t
  (i included if it is of species t), each in the spectrum's own absolute channels,
  so p̄ has S·F features. Averaged over a whole system this is the set of per-species
  mean spectra that a system-mode fit of the one-scale model reads
  (:func:`localcond.engine.domain.descriptor_features`); a species with no ion
  within R contributes zeros. W reads the ion's own structure, which varies from
ion to ion; p̄ averages over tens of ions, so it varies little within a system
and carries what distinguishes state points (how paired the whole neighbourhood
is). The fit (:mod:`localcond.campaign.learn.field_fit`) penalises the two
differently.

Contract (doc/design.md §3): ``cutoff`` = R (the output nodes' edges),
``inner_cutoff`` = rc (the other nodes' edges), ``n_layers`` = 2, so the receptive
field is R + rc: every ion within R of an output node has its whole
rc-neighbourhood among the nodes, and nothing farther is read. The members share the
descriptors; ``members`` returns each member's λ [K, n_local] (their spread is
the model's uncertainty from the finite set of training systems). The spectra come
from a power-spectrum module of the inner cutoff, whose own readout is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localcond.model.contract import ModelMetadata
from localcond.model.export import torch_dtype
from localcond.model.power_spectrum import PowerSpectrumConductivity

KIND = "two-scale-power-spectrum"
AROUND = ("relative", "by_species")


def relative_channels(n_species: int, n_max: int, l_max: int) -> torch.Tensor:
    """[S, F] int64: for a centre of species c, the index of the feature of p that lands at
    each position of the relative-channel spectrum (gather indices). Features are ordered
    (pair a ≤ b of density rows a = s·n_max + n, upper triangle row by row) × l."""
    size = n_species * n_max
    pairs = [(a, b) for a in range(size) for b in range(a, size)]
    position = {pair: k for k, pair in enumerate(pairs)}
    tables = []
    for c in range(n_species):
        def moved(a: int) -> int:
            s, n = divmod(a, n_max)
            return ((s - c) % n_species) * n_max + n

        gather = [0] * (len(pairs) * (l_max + 1))
        for k, (a, b) in enumerate(pairs):
            target = position[tuple(sorted((moved(a), moved(b))))]
            for l in range(l_max + 1):
                gather[target * (l_max + 1) + l] = k * (l_max + 1) + l
        tables.append(gather)
    return torch.tensor(tables, dtype=torch.int64)


class TwoScaleConductivity(torch.nn.Module):
    """The module docstring's model with ``members`` stacked linear readouts (zero weights
    until a fit sets them: :meth:`set_weights`)."""

    def __init__(self, n_species: int, cutoff: float, inner_cutoff: float, n_max: int = 4, l_max: int = 4,
                 members: int = 1, dtype: torch.dtype = torch.float64, around: str = "relative") -> None:
        super().__init__()
        if not 0 < inner_cutoff <= cutoff:
            raise ValueError(f"need 0 < inner_cutoff <= cutoff, got {inner_cutoff} and {cutoff} Å")
        if around not in AROUND:
            raise ValueError(f"around must be one of {AROUND}, got {around!r}")
        self.spectrum = PowerSpectrumConductivity(n_species, inner_cutoff, n_max, l_max, hidden=(), dtype=dtype)
        self.cutoff = float(cutoff)
        self.n_species = n_species
        self.n_features = self.spectrum.n_features
        self.by_species = around == "by_species"
        self.n_around = self.n_features * (n_species if self.by_species else 1)
        self.register_buffer("relative", relative_channels(n_species, n_max, l_max))
        self.register_buffer("bias", torch.zeros(members, n_species, dtype=dtype))
        self.register_buffer("local_weights", torch.zeros(members, n_species, self.n_features, dtype=dtype))
        self.register_buffer("smooth_weights", torch.zeros(members, n_species, self.n_around, dtype=dtype))

    def _neighbourhoods(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                        n_local: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                               torch.Tensor, torch.Tensor]:
        """The spectra and the averaging pattern of p̄.

        Spectra are computed only for the nodes that need them: the output nodes and
        their neighbours within ``cutoff`` (whose edges within rc are read, so ghost
        nodes need their edges: n_layers 2). A ghost shell out to 2R holds many times
        more nodes (about 19 per owned node at 500 ions, 1 mol/L, R = 30 Å); their
        edges are never read.

        Returns p [M, F] of the M needed nodes (output nodes first, in their order), their
        species [M], and per averaged pair (output node i with itself and with each node
        j within R): i, the row of p of j, the averaging channel (i, or i·S + species of j
        with ``by_species``) and 1 / (the number of pairs of that channel)."""
        center = edge_index[0]
        neighbor = edge_index[1]
        r = torch.linalg.vector_norm(edge_vec, dim=1)
        kept = torch.nonzero((center < n_local) & (r < self.cutoff)).squeeze(1)
        needed = torch.zeros(species.shape[0], dtype=torch.bool, device=species.device)
        needed[:n_local] = True
        needed.index_fill_(0, neighbor[kept], True)
        compact = torch.cumsum(needed.to(torch.int64), 0) - 1  # node -> row of p (output nodes keep theirs)
        inner = torch.nonzero(needed[center] & (r < self.spectrum.cutoff)).squeeze(1)
        p = self.spectrum.descriptors(species, torch.stack([compact[center[inner]], neighbor[inner]]),
                                      edge_vec[inner], int(needed.sum().item()))
        own = torch.arange(n_local, device=p.device)
        centers = torch.cat([own, center[kept]])
        columns = torch.cat([own, compact[neighbor[kept]]])
        node_species = species[needed]
        if self.by_species:
            channels = centers * self.n_species + node_species[columns]
            n_channels = n_local * self.n_species
        else:
            channels = centers
            n_channels = n_local
        counts = torch.zeros(n_channels, dtype=p.dtype, device=p.device)
        counts.index_add_(0, channels, torch.ones(channels.shape[0], dtype=p.dtype, device=p.device))
        return p, node_species, centers, columns, channels, 1.0 / counts[channels]

    def _averaged(self, p: torch.Tensor, node_species: torch.Tensor) -> torch.Tensor:
        """The rows of p in the channels that are averaged (relative channels with
        ``around`` relative)."""
        return p if self.by_species else torch.gather(p, 1, self.relative[node_species])

    @torch.jit.export
    def descriptors(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                    n_local: int) -> torch.Tensor:
        """p [n_local, F]: the output nodes' own spectra within the inner cutoff, the
        descriptors of the structure-domain check (:mod:`localcond.engine.domain`)."""
        return self.spectrum.descriptors(species, edge_index, edge_vec, n_local)

    @torch.jit.export
    def features(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                 n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(p [n_local, F], p̄ [n_local, F or S·F]): the output nodes' own spectra and the
        mean of the spectra of the nodes within ``cutoff`` of each, itself included (module
        docstring: ``around``)."""
        p, node_species, _, columns, channels, weights = self._neighbourhoods(species, edge_index, edge_vec, n_local)
        n_channels = n_local * (self.n_species if self.by_species else 1)
        means = self._sum_rows(channels, columns, weights, self._averaged(p, node_species), n_channels)
        return p[:n_local], means.reshape(n_local, self.n_around)

    @torch.jit.export
    def members(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        """Every member's λ [K, n_local] in S cm² mol⁻¹. The same numbers as the module
        docstring's formula on :meth:`features`, summed in another order: U · p̄_i is the
        weighted sum over the pairs of i of U · p_j, so each needed node's spectrum is
        projected on the K members' weights of each centre species once (S·K numbers
        instead of F to sum per pair)."""
        p, node_species, centers, columns, _, weights = self._neighbourhoods(species, edge_index, edge_vec, n_local)
        k = self.bias.shape[0]
        s = self.n_species
        f = self.n_features
        values = self._averaged(p, node_species)
        projected = torch.zeros(values.shape[0], s * k, dtype=p.dtype, device=p.device)  # column c·K + member
        if self.by_species:
            for t in range(s):  # neighbours of species t meet the weights of that species' block
                nodes = torch.nonzero(node_species == t).squeeze(1)
                block = self.smooth_weights[:, :, t * f:(t + 1) * f].permute(1, 0, 2).reshape(s * k, f)
                projected[nodes] = values[nodes] @ block.T
        else:
            projected = values @ self.smooth_weights.permute(1, 0, 2).reshape(s * k, f).T
        around = self._sum_rows(centers, columns, weights, projected, n_local)  # [n_local, S·K]
        local = species[:n_local]
        out = torch.zeros(k, n_local, dtype=p.dtype, device=p.device)
        for c in range(s):  # one matrix product per species, not a weight copy per ion
            nodes = torch.nonzero(local == c).squeeze(1)
            out[:, nodes] = (self.bias[:, c].unsqueeze(1) + self.local_weights[:, c] @ p[nodes].T
                             + around[nodes, c * k:(c + 1) * k].T)
        return out

    def _sum_rows(self, rows: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor, values: torch.Tensor,
                  n_rows: int) -> torch.Tensor:
        """[n_rows, F]: out[rows[e]] += weights[e] · values[columns[e]] over e, as a sparse
        product (gathering a row of values per pair costs ten times as much)."""
        index = torch.stack([rows, columns])
        if torch.jit.is_scripting():
            pattern = torch.sparse_coo_tensor(index, weights, [n_rows, values.shape[0]])
        else:
            pattern = self._eager_pattern(index, weights, n_rows, values.shape[0])
        return torch.sparse.mm(pattern, values)

    @torch.jit.unused
    def _eager_pattern(self, index: torch.Tensor, weights: torch.Tensor, n_rows: int, n_columns: int) -> torch.Tensor:
        # the same tensor; saying so keeps torch from warning that its checks are off
        return torch.sparse_coo_tensor(index, weights, (n_rows, n_columns), check_invariants=False)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        """λ in S cm² mol⁻¹ for nodes 0 … n_local−1 (the contract): the members' mean."""
        return self.members(species, edge_index, edge_vec, n_local).mean(dim=0)

    @torch.no_grad()
    def set_weights(self, bias: torch.Tensor, local_weights: torch.Tensor, smooth_weights: torch.Tensor) -> None:
        """Members' parameters in raw descriptor units: bias [K, S], weights [K, S, F]."""
        k = bias.shape[0]
        shape = (k, self.n_species, self.n_features)
        if (bias.shape != (k, self.n_species) or local_weights.shape != shape
                or smooth_weights.shape != (k, self.n_species, self.n_around)):
            raise ValueError(f"need bias [K, {self.n_species}] and weights [K, {self.n_species}, "
                             f"{self.n_features}] and [K, {self.n_species}, {self.n_around}], got "
                             f"{tuple(bias.shape)}, {tuple(local_weights.shape)}, {tuple(smooth_weights.shape)}")
        dtype = self.bias.dtype
        self.bias = bias.to(dtype).clone()
        self.local_weights = local_weights.to(dtype).clone()
        self.smooth_weights = smooth_weights.to(dtype).clone()


def make_two_scale_model(species: Sequence[str], charges: Sequence[float], cutoff: float = 30.0,
                         inner_cutoff: float = 10.0, n_max: int = 4, l_max: int = 4, members: int = 1,
                         dtype: str = "float64", around: str = "relative") -> tuple[TwoScaleConductivity, ModelMetadata]:
    """The two-scale architecture with zero weights; its metadata say ``trained: false``.
    ``cutoff`` R and ``inner_cutoff`` rc in Å."""
    metadata = ModelMetadata(
        species=tuple(species), charges=tuple(float(q) for q in charges), cutoff=float(cutoff), n_layers=2,
        inner_cutoff=float(inner_cutoff), dtype=dtype, kind=KIND,
        description=(f"UNTRAINED two-scale power-spectrum model (zero weights; rc {float(inner_cutoff)} A, "
                     f"R {float(cutoff)} A, n_max {n_max}, l_max {l_max}, neighbours averaged {around})"),
        trained=False)
    module = TwoScaleConductivity(len(species), cutoff, inner_cutoff, n_max, l_max, members, torch_dtype(metadata),
                                  around)
    return module, metadata
