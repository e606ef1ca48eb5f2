"""Running mean and variance of λ per group (e.g. species), exact under merge.

Batches are combined with Chan et al.'s pairwise update of (count, mean, M2),
so the result does not depend on how values were split into batches or ranks
(up to floating-point rounding).
"""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.base import Reducer, zeroed_like


def _combine(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    n = n_a + n_b
    safe = np.where(n > 0, n, 1.0)
    delta = mean_b - mean_a
    mean = mean_a + delta * n_b / safe
    m2 = m2_a + m2_b + delta**2 * n_a * n_b / safe
    return n, mean, m2


class RunningMoments(Reducer):
    kind = "moments"

    def __init__(self, n_groups: int) -> None:
        self.count = np.zeros(n_groups)
        self.mean = np.zeros(n_groups)
        self.m2 = np.zeros(n_groups)

    def update(self, values: np.ndarray, groups: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        groups = np.asarray(groups, dtype=int)
        self.add_sums(*self.batch_sums(values, groups))

    def batch_sums(self, values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per group: the count, Σ x and Σ (x − c)² of a batch, c the running mean so far.
        Sums of batches on several MPI ranks add up to the whole batch's, so a batch
        spread over ranks enters by one all-reduce of these and :meth:`add_sums`."""
        m = len(self.count)
        n_b = np.bincount(groups, minlength=m).astype(float)
        sums = np.bincount(groups, weights=values, minlength=m)
        centered = np.bincount(groups, weights=(values - self.mean[groups]) ** 2, minlength=m)
        return n_b, sums, centered

    def add_sums(self, n_b: np.ndarray, sums: np.ndarray, centered: np.ndarray) -> None:
        """Add a batch given by :meth:`batch_sums` (taken before this call, about the same
        running mean): M2_b = Σ (x − c)² − n_b (x̄_b − c)². Its relative rounding is about
        1e-16 (x̄_b − c)²/variance: negligible, except in a first batch (c = 0) of values
        far from 0 compared with their spread (1e-8 at a mean 10⁴ times the spread)."""
        safe = np.where(n_b > 0, n_b, 1.0)
        mean_b = sums / safe
        m2_b = np.maximum(centered - n_b * (mean_b - self.mean) ** 2, 0.0)
        self.count, self.mean, self.m2 = _combine(self.count, self.mean, self.m2, n_b, mean_b, m2_b)

    def merge(self, other: "RunningMoments") -> None:
        if len(other.count) != len(self.count):
            raise ValueError("cannot merge moments with different numbers of groups")
        self.count, self.mean, self.m2 = _combine(self.count, self.mean, self.m2,
                                                  other.count, other.mean, other.m2)

    def variance(self) -> np.ndarray:
        """Population variance per group (NaN for empty groups)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / self.count, np.nan)

    def total(self) -> tuple[float, float, float]:
        """(count, mean, population variance) over all groups."""
        n, mean, m2 = 0.0, 0.0, 0.0
        for g in range(len(self.count)):
            n, mean, m2 = _combine(n, mean, m2, self.count[g], self.mean[g], self.m2[g])
        return float(n), float(mean), float(m2 / n) if n else float("nan")

    def for_rank(self, rank: int, size: int) -> "RunningMoments":
        return self.copy() if rank == 0 else zeroed_like(self, ("count", "mean", "m2"))

    def state(self) -> dict[str, np.ndarray]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "RunningMoments":
        out = cls(len(state["count"]))
        out.count, out.mean, out.m2 = (np.array(state[k], dtype=float) for k in ("count", "mean", "m2"))
        return out
