"""Spatial correlation of λ fluctuations versus distance, per species pair and
for like- and unlike-charged pairs.

For pairs (i, j) at distance r (each ordered pair counted, as in a full
neighbor list) the reducer accumulates per (species of i, species of j, r bin)
the sums n, Σλ_i, Σλ_j and Σλ_iλ_j. With the final per-species means μ_s
(from :class:`RunningMoments`), the covariance of fluctuations is

    C_ab(r) = ⟨(λ_i − μ_a)(λ_j − μ_b)⟩_r
            = [Σλ_iλ_j − μ_b Σλ_i − μ_a Σλ_j + n μ_a μ_b] / n,

so no running guess of the mean enters.
"""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.base import Reducer, zeroed_like


class PairCorrelation(Reducer):
    kind = "pair_correlation"

    def __init__(self, rmax: float, bins: int, n_species: int) -> None:
        if rmax <= 0 or bins < 1:
            raise ValueError(f"pair correlation needs rmax > 0 and bins >= 1, got {rmax}, {bins}")
        self.rmax, self.bins = float(rmax), int(bins)
        self.sums = np.zeros((4, n_species, n_species, bins))  # n, Σλi, Σλj, Σλiλj

    def update(self, lam_i: np.ndarray, lam_j: np.ndarray, species_i: np.ndarray,
               species_j: np.ndarray, r: np.ndarray) -> None:
        r = np.asarray(r, dtype=float)
        si, sj = np.asarray(species_i, dtype=np.int64), np.asarray(species_j, dtype=np.int64)
        li, lj = np.asarray(lam_i, dtype=float), np.asarray(lam_j, dtype=float)
        keep = r < self.rmax
        if not keep.all():  # the fix hands over pairs inside RMAX only; others may not
            r, si, sj, li, lj = r[keep], si[keep], sj[keep], li[keep], lj[keep]
        s = self.sums.shape[1]
        flat = (si * s + sj) * self.bins + (r * (self.bins / self.rmax)).astype(np.int64)
        size = s * s * self.bins
        shape = self.sums.shape[1:]
        self.sums[0] += np.bincount(flat, minlength=size).reshape(shape)  # bincount: far faster than np.add.at
        self.sums[1] += np.bincount(flat, weights=li, minlength=size).reshape(shape)
        self.sums[2] += np.bincount(flat, weights=lj, minlength=size).reshape(shape)
        self.sums[3] += np.bincount(flat, weights=li * lj, minlength=size).reshape(shape)

    def add(self, sums: np.ndarray) -> None:
        """Add sums already binned by the caller ([4, S, S, bins]: n, Σλ_i, Σλ_j, Σλ_iλ_j,
        bin = floor(r · bins / rmax)), as the LAMMPS plugin hands them over."""
        sums = np.asarray(sums, dtype=float)
        if sums.shape != self.sums.shape:
            raise ValueError(f"pair sums of shape {sums.shape}, expected {self.sums.shape}")
        self.sums += sums

    def merge(self, other: "PairCorrelation") -> None:
        if (self.rmax, self.bins) != (other.rmax, other.bins) or self.sums.shape != other.sums.shape:
            raise ValueError("cannot merge pair correlations with different bins or species")
        self.sums += other.sums

    @property
    def r_centers(self) -> np.ndarray:
        return (np.arange(self.bins) + 0.5) * self.rmax / self.bins

    def covariance(self, species_mean: np.ndarray) -> np.ndarray:
        """C_ab(r), shape [S, S, bins] (NaN where no pairs)."""
        n, si, sj, sij = self.sums
        mu_a = species_mean[:, None, None]
        mu_b = species_mean[None, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sij - mu_b * si - mu_a * sj + n * mu_a * mu_b) / n

    def by_charge_class(self, species_mean: np.ndarray, charges: np.ndarray) -> dict[str, np.ndarray]:
        """Covariance pooled over like-charged and unlike-charged species pairs."""
        n, si, sj, sij = self.sums
        mu_a = species_mean[:, None, None]
        mu_b = species_mean[None, :, None]
        numerator = sij - mu_b * si - mu_a * sj + n * mu_a * mu_b
        sign = np.sign(np.outer(charges, charges))
        out = {}
        for name, mask in (("like", sign > 0), ("unlike", sign < 0)):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = numerator[mask].sum(axis=0) / n[mask].sum(axis=0)
        return out

    def for_rank(self, rank: int, size: int) -> "PairCorrelation":
        return self.copy() if rank == 0 else zeroed_like(self, ("sums",))

    def state(self) -> dict[str, np.ndarray]:
        return {"rmax": np.array(self.rmax), "sums": self.sums}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "PairCorrelation":
        sums = np.array(state["sums"], dtype=float)
        out = cls(float(state["rmax"]), sums.shape[3], sums.shape[1])
        out.sums = sums
        return out
