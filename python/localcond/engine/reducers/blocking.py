"""Standard error of the mean of a correlated time series by blocking
(Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)), in O(log n) memory.

Level 0 holds the series itself; level k+1 the averages of consecutive pairs
of level-k values. The variance of the mean estimated from level k grows with
k until blocks are longer than the correlation time, then plateaus; we report
the largest estimate among levels that still have at least ``min_blocks``
blocks (conservative); NaN (JSON null) until the series has that many values.
"""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.base import Reducer

MAX_LEVELS = 64


class BlockingError(Reducer):
    kind = "blocking"

    def __init__(self, min_blocks: int = 32) -> None:
        self.min_blocks = min_blocks
        self.n = np.zeros(MAX_LEVELS)
        self.s = np.zeros(MAX_LEVELS)
        self.s2 = np.zeros(MAX_LEVELS)
        self.pending = np.full(MAX_LEVELS, np.nan)

    def update(self, value: float) -> None:
        x = float(value)
        for level in range(MAX_LEVELS):
            self.n[level] += 1
            self.s[level] += x
            self.s2[level] += x * x
            if np.isnan(self.pending[level]):
                self.pending[level] = x
                return
            x = 0.5 * (self.pending[level] + x)
            self.pending[level] = np.nan

    def merge(self, other: "BlockingError") -> None:
        """Pool an independent series (e.g. another replica): level statistics add;
        blocks never straddle the two series."""
        self.n += other.n
        self.s += other.s
        self.s2 += other.s2

    def mean(self) -> float:
        return float(self.s[0] / self.n[0]) if self.n[0] else float("nan")

    def level_errors(self) -> np.ndarray:
        """Standard error of the mean estimated at each level (NaN with < 2 blocks)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self.s2 - self.s**2 / self.n) / (self.n - 1)
            return np.where(self.n >= 2, np.sqrt(np.maximum(var, 0.0) / self.n), np.nan)

    def stderr(self) -> float:
        errors = self.level_errors()
        usable = errors[(self.n >= self.min_blocks) & np.isfinite(errors)]
        return float(usable.max()) if usable.size else float("nan")

    def for_rank(self, rank: int, size: int) -> "BlockingError":
        return self.copy()  # a global series: every rank holds it whole

    def state(self) -> dict[str, np.ndarray]:
        return {"n": self.n, "s": self.s, "s2": self.s2, "pending": self.pending,
                "min_blocks": np.array(self.min_blocks)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "BlockingError":
        out = cls(int(state["min_blocks"]))
        for key in ("n", "s", "s2", "pending"):
            setattr(out, key, np.array(state[key], dtype=float))
        return out
