"""Histogram of λ per group (species) on fixed bins, with under- and overflow."""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.base import Reducer, zeroed_like


class Histogram(Reducer):
    kind = "histogram"

    def __init__(self, lo: float, hi: float, bins: int, n_groups: int) -> None:
        if not hi > lo:
            raise ValueError(f"histogram range must have hi > lo, got [{lo}, {hi}]")
        if bins < 1:
            raise ValueError(f"histogram needs at least one bin, got {bins}")
        self.lo, self.hi, self.bins = float(lo), float(hi), int(bins)
        self.counts = np.zeros((n_groups, bins + 2))  # [underflow, bins..., overflow]

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def update(self, values: np.ndarray, groups: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        index = np.floor((values - self.lo) / (self.hi - self.lo) * self.bins).astype(int) + 1
        index = np.clip(index, 0, self.bins + 1)
        index[values == self.hi] = self.bins  # the last bin is closed on the right
        flat = np.asarray(groups, dtype=int) * (self.bins + 2) + index  # row-major [group, bin]
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def merge(self, other: "Histogram") -> None:
        if (self.lo, self.hi, self.bins) != (other.lo, other.hi, other.bins) or \
                self.counts.shape != other.counts.shape:
            raise ValueError("cannot merge histograms with different bins or groups")
        self.counts += other.counts

    def density(self) -> np.ndarray:
        """Probability density per group over the in-range bins (per unit of λ)."""
        inside = self.counts[:, 1:-1]
        total = self.counts.sum(axis=1, keepdims=True)
        width = (self.hi - self.lo) / self.bins
        with np.errstate(invalid="ignore", divide="ignore"):
            return inside / (total * width)

    def for_rank(self, rank: int, size: int) -> "Histogram":
        return self.copy() if rank == 0 else zeroed_like(self, ("counts",))

    def state(self) -> dict[str, np.ndarray]:
        return {"range": np.array([self.lo, self.hi]), "counts": self.counts}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "Histogram":
        counts = np.array(state["counts"], dtype=float)
        lo, hi = (float(v) for v in state["range"])
        out = cls(lo, hi, counts.shape[1] - 2, counts.shape[0])
        out.counts = counts
        return out
