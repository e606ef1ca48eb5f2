"""A SOAP-like power-spectrum model for the local molar conductivity.

The baseline of Jones et al. (arXiv:2208.03182): per-ion rotation-invariant
descriptors of the ions around it, and a small network per central species,
computed here inside the model from the contract's edge list
(doc/design.md §3), so that one TorchScript file serves LAMMPS, ASE and training.

For a centre i, a neighbor species s and edges (i, j) with r_ij < rc:

    radial basis     g_n(r) = exp(−(r − μ_n)² / (2 w²)),  μ_n = n rc / n_max,
                     w = rc / n_max,  n = 0 … n_max−1             (r, μ, w in Å)
    cutoff           f_c(r) = ½ [cos(π r / rc) + 1]  (0 with zero slope at rc;
                     edges with r ≥ rc are dropped, so they contribute exactly 0)
    angular          Y_lm(r̂), real spherical harmonics, l = 0 … l_max, m = −l … l,
                     orthonormal on the unit sphere (see RealSphericalHarmonics)
    density          c^s_{i,nlm} = Σ_{j of species s} g_n(r_ij) f_c(r_ij) Y_lm(r̂_ij)
    power spectrum   p_i^{a b l} = 4π/(2l+1) Σ_m c_{i,a lm} c_{i,b lm},
                     a = s·n_max + n ≤ b = s'·n_max + n'

The pairs a ≤ b are exactly "s < s' with all n, n'" plus "s = s' with n ≤ n'",
so no invariant is stored twice. The factor 4π/(2l+1) makes
p^{abl} = Σ_{j,k} g_a(r_ij) g_b(r_ik) P_l(cos θ_jik) (addition theorem, with
g_a meaning g_n f_c restricted to species s): the same scale for every l.
There is no central-atom self term (the centre is not part of its own
density, as in dscribe). The feature vector of a node is p flattened
pair-major, l-minor: index = pair · (l_max+1) + l, pairs in the row-major order
of the upper triangle (including the diagonal) of the (S·n_max)² matrix, with S
the number of species. Ghost nodes (index ≥ n_local) are neighbors only.

The descriptor is standardised per central species with stored buffers
(``feature_mean``, ``feature_std``; identity until a trainer calls
:meth:`PowerSpectrumConductivity.set_standardization`), then mapped by one MLP
per central species (SiLU hidden layers) to λ_i in S cm² mol⁻¹.

Relation to dscribe's SOAP (what Jones et al. used: ions only, cutoff 5σ,
n_max = l_max = 4). dscribe expands a Gaussian-smeared density
ρ_s(r) = Σ_j exp(−|r − r_j|²/2σ²) in orthonormalised radial functions (GTO or
polynomial) times Y_lm, and reports p = π √(8/(2l+1)) Σ_m c c* over species
pairs ("crossover"), also without a central self term. Expanding each Gaussian
about the centre gives c_nlm = Σ_j G_nl(r_j) Y_lm(r̂_j) with an l-dependent
smoothed radial function G_nl, so dscribe has the same structure as ours:
a sum over neighbors of radial × Y_lm, squared and summed over m. What differs:

- our density is a sum of points (no smearing) and our radial functions do
  not depend on l; a linear change of the radial basis (e.g. orthonormalising
  it) changes p only by a fixed linear map, which standardisation and the first
  layer can absorb, but dscribe's G_nl span a somewhat different space;
- our basis is not orthonormal (neighboring Gaussians overlap);
- the per-l factor differs (4π/(2l+1) instead of π √(8/(2l+1))), which
  standardisation removes;
- our f_c makes every feature vanish with zero slope at rc; dscribe applies
  no cutoff function unless asked (its optional "weighting"), and its GTO
  radial functions are only small at rc (its polynomial ones do vanish there);
- species are ordered as in the model's species list, not by atomic number.

Spherical harmonics come from e3nn (``e3nn.o3.SphericalHarmonics``, scriptable):
it is needed to build or train a model, not to run a saved one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import torch
from e3nn import o3

from localcond.model.contract import ModelMetadata
from localcond.model.export import torch_dtype

KIND = "power-spectrum"
MAX_L = 12  # the highest degree e3nn implements


class RealSphericalHarmonics(torch.nn.Module):
    """Real spherical harmonics Y_lm(r̂) for l = 0 … l_max, from e3nn.

    Input: vectors [n, 3] of any nonzero length (normalised here; a zero vector
    gives Y_00 = 1/√(4π) and 0 for l > 0). Output [n, (l_max+1)²], column
    l² + l + m for m = −l … l. Convention: orthonormal on the unit sphere, the
    standard table without Condon–Shortley phase, i.e. for m > 0
    Y_lm = √2 (−1)^m Re Y_l^m and Y_l,−m = √2 (−1)^m Im Y_l^m with Y_l^m the
    complex harmonics (Condon–Shortley phase included); so Y_1,−1 ∝ y,
    Y_10 ∝ z, Y_11 ∝ x. e3nn takes y as the polar axis; feeding it (y, z, x)
    gives this table (e3nn's documented correspondence).
    """

    def __init__(self, l_max: int) -> None:
        super().__init__()
        self.harmonics = o3.SphericalHarmonics(
            list(range(l_max + 1)), normalize=True, normalization="integral"
        )

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.harmonics(vectors[:, [1, 2, 0]])


def _mlp(n_in: int, hidden: Sequence[int], dtype: torch.dtype) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for width in hidden:
        layers += [torch.nn.Linear(n_in, width, dtype=dtype), torch.nn.SiLU()]
        n_in = width
    layers.append(torch.nn.Linear(n_in, 1, dtype=dtype))
    return torch.nn.Sequential(*layers)


class PowerSpectrumConductivity(torch.nn.Module):
    """Power-spectrum descriptors (module docstring) and one MLP per central
    species; ``cutoff`` rc in Å, output λ in S cm² mol⁻¹. Constants are
    computed in float64 and stored in ``dtype``."""

    def __init__(
        self, n_species: int, cutoff: float, n_max: int = 4, l_max: int = 4,
        hidden: Sequence[int] = (64, 64), dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive length in Å, got {cutoff}")
        if n_species < 1 or n_max < 1 or not 0 <= l_max <= MAX_L:
            raise ValueError(
                f"need n_species >= 1, n_max >= 1 and 0 <= l_max <= {MAX_L}; "
                f"got {n_species}, {n_max}, {l_max}"
            )
        self.cutoff = float(cutoff)
        self.n_species = n_species
        self.n_max = n_max
        self.l_max = l_max
        self.radial_width = self.cutoff / n_max
        centers = torch.arange(n_max, dtype=torch.float64) * self.radial_width
        self.register_buffer("radial_centers", centers.to(dtype))
        self.spherical_harmonics = RealSphericalHarmonics(l_max)
        l_scale = 4 * math.pi / (2 * torch.arange(l_max + 1, dtype=torch.float64) + 1)
        self.register_buffer("l_scale", l_scale.to(dtype))
        size = n_species * n_max
        self.n_features = size * (size + 1) // 2 * (l_max + 1)
        self.register_buffer("feature_mean", torch.zeros(n_species, self.n_features, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(n_species, self.n_features, dtype=dtype))
        self.mlps = torch.nn.ModuleList([_mlp(self.n_features, hidden, dtype) for _ in range(n_species)])

    def radial(self, r: torch.Tensor) -> torch.Tensor:
        """g_n(r) f_c(r) for distances r [n_edges] in Å, all < rc: [n_edges, n_max]."""
        offsets = (r.unsqueeze(1) - self.radial_centers.unsqueeze(0)) / self.radial_width
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        return torch.exp(-0.5 * offsets * offsets) * envelope.unsqueeze(1)

    def density(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """c_{i,a lm} as [S·n_max, (l_max+1)², n_local], a = s·n_max + n, column
        l² + l + m; nodes last, so that :meth:`power_spectrum` works on whole rows."""
        center = edge_index[0]
        neighbor = edge_index[1]
        r = torch.linalg.vector_norm(edge_vec, dim=1)
        kept = torch.nonzero((center < n_local) & (r < self.cutoff)).squeeze(1)
        radial = self.radial(r[kept])
        angular = self.spherical_harmonics(edge_vec[kept])
        n_lm = angular.shape[1]
        slot = center[kept] * self.n_species + species[neighbor[kept]]
        density = torch.zeros(
            n_local * self.n_species, self.n_max, n_lm, dtype=edge_vec.dtype, device=edge_vec.device
        )
        density.index_add_(0, slot, radial.unsqueeze(2) * angular.unsqueeze(1))
        return density.view(n_local, self.n_species * self.n_max, n_lm).permute(1, 2, 0).contiguous()

    def power_spectrum(self, density: torch.Tensor) -> torch.Tensor:
        """p [n_local, n_features] from :meth:`density` (layout in the module docstring)."""
        size = density.shape[0]
        blocks: List[torch.Tensor] = []
        for l in range(self.l_max + 1):
            c_l = density[:, l * l:(l + 1) * (l + 1)]
            # row a of the upper triangle: Σ_m c_alm c_blm for b = a … size−1, all nodes at once
            rows = [(c_l[a].unsqueeze(0) * c_l[a:]).sum(1) for a in range(size)]
            blocks.append(torch.cat(rows, 0))
        spectrum = torch.stack(blocks, dim=1) * self.l_scale.unsqueeze(1)  # [pairs, l, nodes]
        return spectrum.permute(2, 0, 1).reshape(density.shape[2], self.n_features)

    @torch.jit.export
    def descriptors(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """The power spectrum p of nodes 0 … n_local−1, [n_local, n_features],
        unstandardised. Inputs as in ``forward``; edges whose center is not an
        output node or that are not shorter than rc are ignored."""
        return self.power_spectrum(self.density(species, edge_index, edge_vec, n_local))

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """λ in S cm² mol⁻¹ for nodes 0 … n_local−1 (the contract, doc/design.md §3)."""
        return self.readout(species[:n_local], self.descriptors(species, edge_index, edge_vec, n_local))

    @torch.jit.export
    def readout(self, local_species: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """λ from the (unstandardised) descriptors of the output nodes and their species.
        The descriptors have no trainable parameters, so a trainer may compute them once
        per frame and fit only this part."""
        out = torch.zeros(features.shape[0], dtype=features.dtype, device=features.device)
        for s, mlp in enumerate(self.mlps):
            nodes = torch.nonzero(local_species == s).squeeze(1)
            standardised = (features[nodes] - self.feature_mean[s]) / self.feature_std[s]
            out = out.index_copy(0, nodes, mlp(standardised).squeeze(1))
        return out

    @torch.no_grad()
    def set_standardization(self, species: torch.Tensor, features: torch.Tensor) -> None:
        """Set the input standardisation from training descriptors.

        ``species`` int64 [n_samples]: the central species of each row of
        ``features`` [n_samples, n_features] (as returned by :meth:`descriptors`).
        Per central species s, ``feature_mean[s]`` and ``feature_std[s]`` become
        the mean and standard deviation of its rows; a feature without spread
        keeps std 1. Every species needs at least one row.
        """
        if features.shape[1:] != (self.n_features,) or species.shape != features.shape[:1]:
            raise ValueError(
                f"need species [n] and features [n, {self.n_features}], "
                f"got {tuple(species.shape)} and {tuple(features.shape)}"
            )
        for s in range(self.n_species):
            rows = features[species == s].to(self.feature_mean.dtype)
            if rows.shape[0] == 0:
                raise ValueError(f"no descriptors of species {s} to standardise with")
            std = rows.std(dim=0, correction=0)
            self.feature_mean[s] = rows.mean(dim=0)
            self.feature_std[s] = torch.where(std > 0, std, torch.ones_like(std))


def make_power_spectrum_model(
    species: Sequence[str], charges: Sequence[float], cutoff: float = 10.0, n_max: int = 4,
    l_max: int = 4, hidden: Sequence[int] = (64, 64), dtype: str = "float32", seed: int = 0,
) -> tuple[PowerSpectrumConductivity, ModelMetadata]:
    """The power-spectrum architecture with random weights and identity
    standardisation, in ``dtype``; its metadata say ``trained: false``.

    ``charges`` in e (metadata only), ``cutoff`` in Å (the receptive field: one
    layer), ``n_max`` radial functions, harmonics up to ``l_max``, ``hidden``
    the widths of each species' MLP.
    """
    metadata = ModelMetadata(
        species=tuple(species),
        charges=tuple(float(q) for q in charges),
        cutoff=float(cutoff),
        n_layers=1,
        dtype=dtype,
        kind=KIND,
        description=(
            f"UNTRAINED power-spectrum (SOAP-like) model with random weights (seed {seed}, "
            f"n_max {n_max}, l_max {l_max}, hidden {tuple(hidden)}, cutoff {float(cutoff)} A): "
            "realistic cost, meaningless values"
        ),
        trained=False,
    )
    torch.manual_seed(seed)
    module = PowerSpectrumConductivity(len(species), cutoff, n_max, l_max, hidden, torch_dtype(metadata))
    return module, metadata
