"""Time autocorrelation of each ion's λ, at lags 0 … nlags−1 evaluations on a
multiple-tau ladder (:mod:`localcond.engine.reducers.ladder`: every lag up to 8, then
log-spaced; exact pairs, fewer origins at long lags).

Ions are followed by atom ID (:mod:`localcond.engine.reducers.tracked`). Per species
and lag the reducer sums n, Σλ(t), Σλ(t+k) and Σλ(t)λ(t+k); with the final
per-species means μ_s,

    C_s(k) = [Σλ(t)λ(t+k) − μ_s (Σλ(t) + Σλ(t+k)) + n μ_s²] / n.

Lags are counted in evaluations of one continuous history; the caller keys
them to time (the reducer set's interval).
"""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.ladder import P_DEFAULT, Ladder
from localcond.engine.reducers.tracked import IonHistoryReducer, TrackedIons


class TimeCorrelation(IonHistoryReducer):
    kind = "time_correlation"
    dim = 1  # followed per ion: λ

    def __init__(self, nlags: int, n_species: int, p: int = P_DEFAULT) -> None:
        if nlags < 1:
            raise ValueError(f"time correlation needs nlags >= 1, got {nlags}")
        self.nlags, self.n_species, self.p = int(nlags), int(n_species), int(p)
        self.ladder = Ladder(self.nlags - 1, p)
        self.lags = np.concatenate([[0], self.ladder.lags]).astype(np.int64)
        self.sums = np.zeros((4, n_species, self.lags.size))  # n, Σλ(t), Σλ(t+k), Σλ(t)λ(t+k)
        self.ions = TrackedIons(self.ladder, self.dim)

    def restart(self) -> None:
        """Start a new history (the next update pairs with nothing before it)."""
        self.ions.restart()

    def update(self, ids: np.ndarray, species: np.ndarray, lam: np.ndarray) -> None:
        now, pairs = self.ions.push(ids, species, lam)
        rows = self.ions.indicator_rows(self.n_species)  # [S, n]
        b = now[:, 0]
        counts, b_sums = self.ions.species_counts(self.n_species), rows @ b  # [S]
        self.sums[:, :, 0] += np.stack([counts, b_sums, b_sums, rows @ (b * b)])
        if not pairs:
            return
        s = self.n_species
        both = np.concatenate([rows, rows * b[None, :]])  # [2S, n]: Σλ(t) and Σλ(t)λ(t+k)
        for index, past, _, _ in pairs:
            sums = past[:, :, 0] @ both.T  # [J, 2S]
            block = np.empty((4, s, index.size))  # n, Σλ(t), Σλ(t+k), Σλ(t)λ(t+k) [., S, J]
            block[0] = counts[:, None]
            block[1] = sums[:, :s].T
            block[2] = b_sums[:, None]
            block[3] = sums[:, s:].T
            self.sums[:, :, index + 1] += block  # lag positions are distinct within one update

    def correlation(self, species_mean: np.ndarray, normalize: bool = True) -> np.ndarray:
        """C_s(k) at ``self.lags``, shape [S, lags]; divided by C_s(0) when ``normalize``."""
        n, a, b, ab = self.sums
        mu = species_mean[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (ab - mu * (a + b) + n * mu * mu) / n
            return c / c[:, :1] if normalize else c
