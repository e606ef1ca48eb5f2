"""Time autocorrelation of each ion's λ over lags of 0 … nlags−1 evaluations.

Ions are tracked by atom ID, not by position in a rank's arrays: the caller
hands each rank the values of the IDs it owns (e.g. ID mod nprocs), so the
history of an ion survives its migration between domains. Per species and
lag the reducer sums n, Σλ(t), Σλ(t+k) and Σλ(t)λ(t+k); with the final
per-species means μ_s,

    C_s(k) = [Σλ(t)λ(t+k) − μ_s (Σλ(t) + Σλ(t+k)) + n μ_s²] / n.
"""

from __future__ import annotations

import numpy as np

from localcond.reduce.store import Reducer


class TimeCorrelation(Reducer):
    kind = "time_correlation"

    def __init__(self, nlags: int, n_species: int) -> None:
        if nlags < 1:
            raise ValueError(f"time correlation needs nlags >= 1, got {nlags}")
        self.nlags = int(nlags)
        self.sums = np.zeros((4, n_species, nlags))  # n, Σλ(t), Σλ(t+k), Σλ(t)λ(t+k)
        self.ids = np.zeros(0, dtype=np.int64)  # tracked ions, sorted
        self.species = np.zeros(0, dtype=np.int64)
        self.history = np.zeros((0, nlags))  # row: values at t-0, t-1, ... (most recent first)
        self.filled = np.zeros(0, dtype=np.int64)  # how many past values each ion has

    def update(self, ids: np.ndarray, species: np.ndarray, lam: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        species = np.asarray(species, dtype=np.int64)
        lam = np.asarray(lam, dtype=float)
        new = np.setdiff1d(ids, self.ids)
        if new.size:
            order = np.argsort(ids)
            merged = np.concatenate([self.ids, new])
            sort = np.argsort(merged, kind="stable")
            new_species = species[order][np.searchsorted(ids[order], new)]
            self.ids = merged[sort]
            self.species = np.concatenate([self.species, new_species])[sort]
            self.history = np.concatenate([self.history, np.zeros((new.size, self.nlags))])[sort]
            self.filled = np.concatenate([self.filled, np.zeros(new.size, dtype=np.int64)])[sort]
        rows = np.searchsorted(self.ids, ids)
        if np.any(self.species[rows] != species):
            raise ValueError("an ion's species changed between updates")
        # shift histories of the updated ions and put the new value in front
        self.history[rows, 1:] = self.history[rows, :-1]
        self.history[rows, 0] = lam
        self.filled[rows] = np.minimum(self.filled[rows] + 1, self.nlags)
        valid = np.arange(self.nlags)[None, :] < self.filled[rows][:, None]  # lag k available
        past = self.history[rows]  # λ(t−k)
        now = lam[:, None]
        s = np.broadcast_to(species[:, None], past.shape)
        k = np.broadcast_to(np.arange(self.nlags)[None, :], past.shape)
        flat = np.ravel_multi_index((s[valid], k[valid]), self.sums.shape[1:])
        size = int(np.prod(self.sums.shape[1:]))
        for idx, w in enumerate((None, past, np.broadcast_to(now, past.shape), past * now)):
            weights = None if w is None else w[valid]
            self.sums[idx] += np.bincount(flat, weights=weights, minlength=size).reshape(self.sums.shape[1:])

    def merge(self, other: "TimeCorrelation") -> None:
        """Combine two reducers that track disjoint sets of ions (e.g. two ranks)."""
        if self.nlags != other.nlags or self.sums.shape != other.sums.shape:
            raise ValueError("cannot merge time correlations with different lags or species")
        if np.intersect1d(self.ids, other.ids).size:
            raise ValueError("cannot merge time correlations that track the same ions")
        self.sums += other.sums
        ids = np.concatenate([self.ids, other.ids])
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.species = np.concatenate([self.species, other.species])[order]
        self.history = np.concatenate([self.history, other.history])[order]
        self.filled = np.concatenate([self.filled, other.filled])[order]

    def correlation(self, species_mean: np.ndarray, normalize: bool = True) -> np.ndarray:
        """C_s(k), shape [S, nlags]; divided by C_s(0) when ``normalize``."""
        n, a, b, ab = self.sums
        mu = species_mean[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (ab - mu * (a + b) + n * mu * mu) / n
            return c / c[:, :1] if normalize else c

    def state(self) -> dict[str, np.ndarray]:
        return {"sums": self.sums, "ids": self.ids, "species": self.species,
                "history": self.history, "filled": self.filled}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "TimeCorrelation":
        sums = np.array(state["sums"], dtype=float)
        out = cls(sums.shape[2], sums.shape[1])
        out.sums = sums
        out.ids = np.array(state["ids"], dtype=np.int64)
        out.species = np.array(state["species"], dtype=np.int64)
        out.history = np.array(state["history"], dtype=float).reshape(-1, out.nlags)
        out.filled = np.array(state["filled"], dtype=np.int64)
        return out
