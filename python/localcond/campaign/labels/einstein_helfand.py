"""Streaming Einstein–Helfand and Nernst–Einstein estimators.

For lags τ_ℓ = ℓ Δt and every time origin t0 (overlapping origins), one pass
over the frames accumulates, per block of origins:

    ⟨|ΔM|²⟩,  ΔM = Σ_j q_j [r_j(t0+τ) − r_j(t0)]          (collective, e² Å²)
    ⟨Σ_{i∈s} |Δr_i|²⟩ and ⟨Σ_{i∈s} q_i² |Δr_i|²⟩          (self, per species s)
    ⟨ΔM_s · ΔM⟩, ΔM_s = Σ_{i∈s} q_i Δr_i                   (species split)

With a polarisation vector P(t) per frame (e Å; the part of the all-atom dipole
Σ_a q_a r_a that the ions' nodes leave out: solvent dipoles, the dipoles of
molecular ions about their centre atoms), ΔM becomes ΔM + ΔP: the current of
every charged atom. The self and species terms stay the ions' own; the species
shares then sum to 1 − ⟨ΔP · ΔM⟩/⟨|ΔM|²⟩.

Only the last max-lag frames are kept (memory independent of trajectory
length). Origins of each lag are split into ``n_blocks`` equal consecutive
blocks; the standard error of a quantity is the standard deviation of its
block values divided by √n_blocks (blocks of a long trajectory are close to
independent; overlapping origins are never treated as independent samples);
the value itself pools all origins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BlockSums:
    """Sums over origins, indexed [block, lag] (and species)."""

    count: np.ndarray  # [B, L]
    m2: np.ndarray  # [B, L]
    self_sq: np.ndarray  # [B, L, S]  Σ_{i∈s} |Δr_i|²
    self_q2: np.ndarray  # [B, L, S]  Σ_{i∈s} q_i² |Δr_i|²
    cross: np.ndarray  # [B, L, S]  ΔM_s · ΔM

    @classmethod
    def zeros(cls, n_blocks: int, n_lags: int, n_species: int) -> "BlockSums":
        return cls(
            np.zeros((n_blocks, n_lags)), np.zeros((n_blocks, n_lags)),
            np.zeros((n_blocks, n_lags, n_species)), np.zeros((n_blocks, n_lags, n_species)),
            np.zeros((n_blocks, n_lags, n_species)),
        )

    def means(self) -> "BlockSums":
        """Per-block means (sums divided by the number of origins)."""
        c = np.where(self.count > 0, self.count, np.nan)
        return BlockSums(self.count, self.m2 / c, self.self_sq / c[..., None],
                         self.self_q2 / c[..., None], self.cross / c[..., None])

    def total(self) -> "BlockSums":
        """All blocks pooled into one."""
        return BlockSums(*(a.sum(axis=0, keepdims=True) for a in
                           (self.count, self.m2, self.self_sq, self.self_q2, self.cross)))

    @staticmethod
    def stack(parts: "list[BlockSums]") -> "BlockSums":
        return BlockSums(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                           ("count", "m2", "self_sq", "self_q2", "cross")))


class DisplacementAccumulator:
    """Accumulates displacement statistics of one trajectory of ``n_frames`` frames.

    ``lags`` are in frames (positive, increasing); ``species_index`` gives each
    ion's species (0 … n_species−1); ``charges`` in e.
    """

    def __init__(self, charges: np.ndarray, species_index: np.ndarray, lags: np.ndarray,
                 n_frames: int, n_blocks: int) -> None:
        self.charges = np.asarray(charges, dtype=float)
        self.lags = np.asarray(lags, dtype=int)
        if self.lags.min() < 1 or self.lags.max() >= n_frames:
            raise ValueError(f"lags must lie in [1, {n_frames - 1}] frames")
        if n_blocks < 1:
            raise ValueError("n_blocks must be >= 1")
        self.n_frames = n_frames
        self.n_blocks = n_blocks
        n_species = int(species_index.max()) + 1
        self.onehot = np.zeros((len(self.charges), n_species))
        self.onehot[np.arange(len(self.charges)), species_index] = 1.0
        self.sums = BlockSums.zeros(n_blocks, len(self.lags), n_species)
        depth = int(self.lags.max()) + 1
        self.ring = np.zeros((depth, len(self.charges), 3))
        self.ring_p = np.zeros((depth, 3))
        self.seen = 0

    def add(self, positions: np.ndarray, polarisation: np.ndarray | None = None) -> None:
        """The next frame's unwrapped positions (Å, [n_ions, 3]) and, optionally, the
        polarisation vector P (e Å, [3]) whose change joins ΔM (see the module docstring).
        Give P for every frame of a trajectory or for none."""
        k = self.seen
        depth = self.ring.shape[0]
        self.ring[k % depth] = positions
        if polarisation is not None:
            self.ring_p[k % depth] = polarisation
        active = np.flatnonzero(self.lags <= k)
        if active.size:
            lags = self.lags[active]
            dr = positions[None, :, :] - self.ring[(k - lags) % depth]  # [A, N, 3]
            qdr = dr * self.charges[None, :, None]
            dm = qdr.sum(axis=1)  # [A, 3]
            if polarisation is not None:
                dm = dm + (polarisation[None, :] - self.ring_p[(k - lags) % depth])
            dm_species = np.einsum("anx,ns->asx", qdr, self.onehot)  # [A, S, 3]
            sq = np.einsum("anx,anx->an", dr, dr)  # [A, N]
            origins = k - lags
            blocks = np.minimum(origins * self.n_blocks // (self.n_frames - lags), self.n_blocks - 1)
            s = self.sums
            np.add.at(s.count, (blocks, active), 1.0)
            np.add.at(s.m2, (blocks, active), np.einsum("ax,ax->a", dm, dm))
            np.add.at(s.self_sq, (blocks, active), sq @ self.onehot)
            np.add.at(s.self_q2, (blocks, active), (sq * self.charges**2) @ self.onehot)
            np.add.at(s.cross, (blocks, active), np.einsum("asx,ax->as", dm_species, dm))
        self.seen += 1


def block_estimate(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of independent block values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def log_spaced_lags(max_lag: int, n: int = 40, extra: tuple[int, ...] = ()) -> np.ndarray:
    """Integer lags 1 … max_lag, roughly log-spaced, plus the given lags."""
    lags = np.unique(np.round(np.geomspace(1, max(max_lag, 1), n)).astype(int))
    return np.unique(np.concatenate([lags, np.asarray(extra, dtype=int)]))
