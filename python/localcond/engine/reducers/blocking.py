"""Standard error of the mean of a correlated time series by blocking, with the level
chosen by a test rather than by eye, in O(log n) memory.

Level 0 holds the series; level k+1 the averages of consecutive pairs of level-k
values (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)). Once blocks are
longer than the correlation time, the block averages are uncorrelated and the
naive standard error of the mean at that level is right. Which level: the
automated rule of Jonsson (Phys. Rev. E 98, 043304 (2018)) — with n_k blocks at
level k, variance σ_k² and lag-1 autocorrelation ρ_k of the block averages,

    M_j = Σ_{k ≥ j} n_k ρ_k²

is a χ² statistic with (number of levels − j) degrees of freedom if the levels
from j on are uncorrelated; the chosen level is the first j whose M_j is below
the 99 % quantile. The test passes as soon as the residual correlation is too
weak to detect, not when it is gone, so the naive error there is still low (by
9–28 % for AR(1) series with φ = 0.5–0.999, tests/test_reducers.py); the error
reported corrects for the residual lag-1 correlation ρ_j of the block averages
as for an AR(1) series of blocks:

    σ_mean² = σ_j² / (n_j − 1) · (1 + ρ_j) / (1 − ρ_j),   ρ_j clipped to [0, 0.5]

which brought the 1σ coverage of the mean to 66–69 % for φ = 0–0.999 (1000
AR(1) series each, 4096–65536 values).

"Too short to tell" gives NaN, with a reason (:meth:`BlockingError.why_undetermined`):
fewer than ``min_blocks`` values, no level passes, or the passing level has
fewer than ``min_blocks`` blocks (its error estimate would itself be uncertain
by more than ~1/√(2·min_blocks), and such a level passes the test mostly for
want of power).

Several independent series (replicas, files) pool exactly: per level the sums
of values, squares and lag-1 products add; lag-1 products never straddle two
series (each series keeps its first and last value per level for the mean
correction).
"""

from __future__ import annotations

import numpy as np
from scipy.special import chdtri  # at import, not at a run's 16th evaluation (scipy.stats took 0.8 s there)

from localcond.engine.reducers.base import Reducer

MAX_LEVELS = 64
CONFIDENCE = 0.99
MAX_RESIDUAL_RHO = 0.5  # the chosen level's lag-1 correlation is at most this in the correction


def _chi2_quantiles(max_dof: int) -> np.ndarray:
    """The CONFIDENCE quantiles of χ² with 1 … max_dof degrees of freedom (chdtri: the
    inverse of the upper tail, so chi2.ppf(q, k) = chdtri(k, 1 − q))."""
    return chdtri(np.arange(1, max_dof + 1), 1.0 - CONFIDENCE)


class BlockingError(Reducer):
    kind = "blocking"

    def __init__(self, min_blocks: int = 16) -> None:
        self.min_blocks = min_blocks
        self.n = np.zeros(MAX_LEVELS)  # values per level (all series)
        self.s = np.zeros(MAX_LEVELS)  # Σ x
        self.s2 = np.zeros(MAX_LEVELS)  # Σ x²
        self.p = np.zeros(MAX_LEVELS)  # Σ x_i x_{i+1} within a series
        self.ends = np.zeros(MAX_LEVELS)  # Σ over closed series of (first + last) value
        self.series = np.zeros(MAX_LEVELS)  # closed series with values at the level
        # the open series: its first and last value per level, and a half-filled pair
        self.first = np.full(MAX_LEVELS, np.nan)
        self.last = np.full(MAX_LEVELS, np.nan)
        self.pending = np.full(MAX_LEVELS, np.nan)

    def update(self, value: float) -> None:
        x = float(value)
        for level in range(MAX_LEVELS):
            self.n[level] += 1
            self.s[level] += x
            self.s2[level] += x * x
            if np.isnan(self.first[level]):
                self.first[level] = x
            else:
                self.p[level] += self.last[level] * x
            self.last[level] = x
            if np.isnan(self.pending[level]):
                self.pending[level] = x
                return
            x = 0.5 * (self.pending[level] + x)
            self.pending[level] = np.nan

    def _close(self) -> None:
        """End the open series: its ends join the closed sums; later values start a new one."""
        has = ~np.isnan(self.first)
        self.ends[has] += self.first[has] + self.last[has]
        self.series[has] += 1
        self.first[:] = self.last[:] = self.pending[:] = np.nan

    def merge(self, other: "BlockingError") -> None:
        """Pool an independent series (another replica, another file): level statistics
        add; blocks and lag-1 products never straddle the two series."""
        other = other.copy()
        self._close()
        other._close()
        for key in ("n", "s", "s2", "p", "ends", "series"):
            setattr(self, key, getattr(self, key) + getattr(other, key))

    def mean(self) -> float:
        return float(self.s[0] / self.n[0]) if self.n[0] else float("nan")

    def level_statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per level with at least 2 values: (values n_k, variance σ_k² with 1/n_k, lag-1
        autocorrelation ρ_k), the open series counted as closed."""
        has = ~np.isnan(self.first)
        ends = self.ends + np.where(has, self.first + self.last, 0.0)
        series = self.series + has
        keep = self.n >= 2
        n, s, s2, p = self.n[keep], self.s[keep], self.s2[keep], self.p[keep]
        mu = s / n
        var = np.maximum(s2 / n - mu * mu, 0.0)
        # Σ over lag-1 pairs of (x_i − μ)(x_{i+1} − μ): each series has (its values − 1) pairs
        pairs = p - mu * (2.0 * s - ends[keep]) + (n - series[keep]) * mu * mu
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(var > 0, pairs / n / var, 0.0)
        return n, var, rho

    def level_errors(self) -> np.ndarray:
        """The naive standard error of the mean at each level (NaN with < 2 values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self.s2 - self.s**2 / self.n) / (self.n - 1)
            return np.where(self.n >= 2, np.sqrt(np.maximum(var, 0.0) / self.n), np.nan)

    def chosen_level(self) -> int | None:
        """The first level whose blocks and all coarser ones test as uncorrelated (None if none)."""
        n, var, rho = self.level_statistics()
        if n.size < 2:
            return None
        terms = n * rho * rho
        tail = np.cumsum(terms[::-1])[::-1]  # M_j
        quantiles = _chi2_quantiles(n.size)[::-1][: n.size]  # dof = levels − j
        passing = np.flatnonzero(tail < quantiles)
        return int(passing[0]) if passing.size else None

    def why_undetermined(self) -> str | None:
        """Why :meth:`stderr` is NaN (None when it is not)."""
        if self.n[0] < self.min_blocks:
            return f"{int(self.n[0])} values: blocking needs at least {self.min_blocks}"
        level = self.chosen_level()
        if level is None:
            return "no blocking level tests as uncorrelated: the series is correlated over its whole length"
        if self.n[level] < self.min_blocks:
            return (f"blocks become uncorrelated only at level {level}, with {int(self.n[level])} blocks of "
                    f"{2 ** level} values (fewer than {self.min_blocks}): the run is too short to tell its "
                    "error; run longer")
        return None

    def stderr(self) -> float:
        if self.why_undetermined() is not None:
            return float("nan")
        level = self.chosen_level()
        assert level is not None
        n, var, rho = self.level_statistics()
        r = float(np.clip(rho[level], 0.0, MAX_RESIDUAL_RHO))
        return float(np.sqrt(var[level] / (n[level] - 1) * (1.0 + r) / (1.0 - r)))

    def for_rank(self, rank: int, size: int) -> "BlockingError":
        return self.copy()  # a global series: every rank holds it whole

    def state(self) -> dict[str, np.ndarray]:
        return {"n": self.n, "s": self.s, "s2": self.s2, "p": self.p, "ends": self.ends, "series": self.series,
                "first": self.first, "last": self.last, "pending": self.pending,
                "min_blocks": np.array(self.min_blocks)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "BlockingError":
        out = cls(int(state["min_blocks"]))
        if "p" not in state:
            raise ValueError("a blocking state written before its lag-1 sums were kept: the error of its "
                             "mean cannot be determined; rerun to rewrite the file")
        for key in ("n", "s", "s2", "p", "ends", "series", "first", "last", "pending"):
            setattr(out, key, np.array(state[key], dtype=float))
        return out
