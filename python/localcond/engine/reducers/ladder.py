"""Lags of a multiple-tau layout, and per-ion histories sampled on it.

Ramírez, Sukumaran, Vorselaars & Likhtman, J. Chem. Phys. 133, 154103 (2010)
arrange a correlator's lags in levels: level 0 keeps the last p values and
gives lags 1 … p at every origin; level l ≥ 1 keeps one value every 2^l
evaluations and gives lags 2^l·j for j = p/2+1 … p. Memory per history is
levels × (p+1) values for lags up to p·2^(levels−1), and the work per
evaluation is about 1.5 p pairs whatever the longest lag.

Ramírez et al. average the values inside a block of 2^l evaluations. Here a
level keeps the value at the block's first evaluation instead (decimation by
sampling), so every pair (t, t+τ) is a true pair of evaluations τ apart and
every lag is exact; what a level gives up is origins (one every 2^l
evaluations). Averaging would bias displacements: for a random walk the mean
square difference of block averages 2^l apart in time is short by a third of
a block, 1/12 of the lag at p = 8.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

P_DEFAULT = 8  # 4 lags per octave beyond 8: ample for smooth curves, half the work of 16


class Ladder:
    """The lags (in evaluations) of a multiple-tau layout up to ``max_lag``."""

    def __init__(self, max_lag: int, p: int = P_DEFAULT) -> None:
        if p < 2 or p % 2:
            raise ValueError(f"the points per level must be an even number >= 2, got {p}")
        if max_lag < 0:
            raise ValueError(f"the longest lag must be >= 0, got {max_lag}")
        self.max_lag, self.p = int(max_lag), int(p)
        lags: list[int] = []
        self.js: list[np.ndarray] = []  # per level: the j of its lags (lag = j·2^level)
        self.index: list[np.ndarray] = []  # per level: the positions of its lags in `lags`
        level = 0
        while max_lag > 0:
            first = 1 if level == 0 else p // 2 + 1
            js = [j for j in range(first, p + 1) if j << level <= max_lag]
            self.js.append(np.array(js, dtype=np.int64))
            self.index.append(np.arange(len(lags), len(lags) + len(js)))
            lags.extend(j << level for j in js)
            if p << level >= max_lag:
                break
            level += 1
        self.lags = np.array(lags, dtype=np.int64)
        self.levels = len(self.js)


class Pairs(NamedTuple):
    """Lags completed by one push: their positions in ``Ladder.lags``, the past
    values they pair with [J, n, dim] (a view), and where those lie in the ring."""

    index: np.ndarray
    past: np.ndarray
    level: int
    slots: slice


class LadderHistory:
    """Histories of ``n`` rows (ions) of ``dim`` values each, kept on a ladder.

    ``push(values)`` stores one evaluation and returns, per level that samples
    it, the lag positions available and the past values [J, n, dim] those lags
    pair with the new values (views into the history: use before the next push),
    with the level and ring slots of those values (:class:`Pairs`); ``written``
    lists the (level, slot) the push stored to. ``k`` counts the evaluations of
    this history. Storage is [level, slot, row, value], so one evaluation is one
    contiguous write.
    """

    def __init__(self, ladder: Ladder, n: int, dim: int) -> None:
        self.ladder = ladder
        self.depth = ladder.p + 1
        self.ring = np.zeros((ladder.levels, self.depth, n, dim))
        self.count = np.zeros(ladder.levels, dtype=np.int64)  # samples stored per level
        self.k = 0
        self.written: list[tuple[int, int]] = []  # (level, slot) stored by the last push
        self._cache: dict[tuple[int, int, int], list[tuple[np.ndarray, int, int]]] = {}

    def push(self, values: np.ndarray) -> list["Pairs"]:
        out = []
        self.written = []
        for level in range(self.ladder.levels):
            if self.k % (1 << level):
                break
            slot = int(self.count[level] % self.depth)
            self.ring[level, slot] = values
            self.written.append((level, slot))
            for index, first, last in self._runs(level, slot, int(self.count[level])):
                out.append(Pairs(index, self.ring[level, first:last + 1], level, slice(first, last + 1)))
            self.count[level] += 1
        self.k += 1
        return out

    def _runs(self, level: int, slot: int, count: int) -> list[tuple[np.ndarray, int, int]]:
        """The lags of ``level`` a value stored at ``slot`` completes, after ``count``
        earlier samples of the level, as (lag positions, first slot, last slot) runs.
        The past slots of consecutive j are consecutive in the ring (up to one wrap),
        so a push hands out views of at most two contiguous runs instead of a gathered
        copy. The runs depend only on (level, slot, min(count, p)): cached."""
        key = (level, slot, min(count, self.ladder.p))
        runs = self._cache.get(key)
        if runs is None:
            runs = []
            js = self.ladder.js[level]
            ready = js <= count
            if ready.any():
                index = self.ladder.index[level][ready][::-1]  # j descending = slots ascending
                slots = (slot - js[ready][::-1]) % self.depth
                wrap = np.flatnonzero(np.diff(slots) != 1)
                cut = int(wrap[0]) + 1 if wrap.size else slots.size
                for part in (slice(0, cut), slice(cut, slots.size)):
                    if part.start < part.stop:
                        runs.append((index[part], int(slots[part.start]), int(slots[part.stop - 1])))
            self._cache[key] = runs
        return runs

    def last(self) -> np.ndarray:
        """The values of the last evaluation [n, dim]."""
        return self.ring[0, (self.count[0] - 1) % self.depth]

    def rows(self, keep: np.ndarray) -> "LadderHistory":
        """The same history for a subset (or reordering) of its rows."""
        out = LadderHistory(self.ladder, 0, self.ring.shape[3])
        out.ring = self.ring[:, :, keep]
        out.count, out.k = self.count.copy(), self.k
        return out

    @staticmethod
    def stack(parts: list["LadderHistory"], order: np.ndarray) -> "LadderHistory":
        """Rows of histories in step (same evaluations), concatenated and reordered."""
        first = parts[0]
        for other in parts[1:]:
            if other.k != first.k or not np.array_equal(other.count, first.count):
                raise ValueError("cannot join ion histories of different evaluations")
        out = first.rows(np.arange(first.ring.shape[2]))
        out.ring = np.concatenate([p.ring for p in parts], axis=2)[:, :, order]
        return out

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}ring": self.ring, f"{prefix}count": self.count, f"{prefix}k": np.array(self.k)}

    @classmethod
    def from_state(cls, ladder: Ladder, state: dict[str, np.ndarray], prefix: str, dim: int) -> "LadderHistory":
        out = cls(ladder, 0, dim)
        out.ring = np.array(state[f"{prefix}ring"], dtype=float).reshape(ladder.levels, out.depth, -1, dim)
        out.count = np.array(state[f"{prefix}count"], dtype=np.int64).reshape(ladder.levels)
        out.k = int(state[f"{prefix}k"])
        return out
