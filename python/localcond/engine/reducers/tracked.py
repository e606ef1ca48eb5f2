"""The ions one rank follows through a history of evaluations, by atom ID.

Each rank follows the ions whose atom ID modulo the number of ranks is its
rank, whichever domain holds them, so an ion's history survives migration.
A history covers one continuous stretch of evaluations (see
:mod:`localcond.engine.reducers.timeline`); ``restart`` forgets it, and within it the
set of ions and their species must not change.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, TypeVar

import numpy as np

from localcond.engine.reducers.base import Reducer
from localcond.engine.reducers.ladder import Ladder, LadderHistory, Pairs


class TrackedIons:
    def __init__(self, ladder: Ladder, dim: int) -> None:
        self.ladder, self.dim = ladder, dim
        self.ids = np.zeros(0, dtype=np.int64)  # sorted
        self.species = np.zeros(0, dtype=np.int64)
        self.history: LadderHistory | None = None
        self.onehot = np.zeros((0, 0))  # [n, S] species indicator of the rows
        self.constants = np.zeros(0)  # per row, fixed for the history (e.g. charges)
        self.onehot_rows = np.zeros((0, 0))  # cached with onehot: its transpose [S, n]
        self.counts = np.zeros(0)  # ... and the rows per species [S]
        self._given: np.ndarray | None = None  # the IDs as last given, their species, and the
        self._given_species = np.zeros(0, dtype=np.int64)  # rows that put them in ID order
        self._take = np.zeros(0, dtype=np.int64)

    def restart(self) -> None:
        self.ids = self.ids[:0]
        self.species = self.species[:0]
        self.constants = self.constants[:0]
        self.onehot = np.zeros((0, 0))
        self._given = None
        self.history = None

    def indicator(self, n_species: int) -> np.ndarray:
        """[n, S]: 1 where row i is of species s (cached for the history)."""
        if self.onehot.shape != (self.ids.size, n_species):
            self.onehot = np.eye(n_species)[self.species]
            self.onehot_rows = np.ascontiguousarray(self.onehot.T)
            self.counts = self.onehot.sum(axis=0)
        return self.onehot

    def indicator_rows(self, n_species: int) -> np.ndarray:
        """[S, n], contiguous: the indicator transposed (numpy is slow on a short
        trailing axis, so products with per-ion vectors use this layout)."""
        self.indicator(n_species)
        return self.onehot_rows

    def species_counts(self, n_species: int) -> np.ndarray:
        """[S]: the rows of each species (cached for the history)."""
        self.indicator(n_species)
        return self.counts

    def push(self, ids: np.ndarray, species: np.ndarray, values: np.ndarray,
             constants: np.ndarray | None = None) -> tuple[np.ndarray, list[Pairs]]:
        """Store one evaluation; return the values in row order (sorted IDs) and the
        lags it completes with their past values (:class:`~localcond.engine.reducers.ladder.Pairs`)."""
        ids = np.asarray(ids, dtype=np.int64)
        species = np.asarray(species, dtype=np.int64)
        if self.history is None:
            order = np.argsort(ids)
            self.ids, self.species = ids[order], species[order]
            self.constants = np.asarray(constants, dtype=float)[order] if constants is not None else np.zeros(ids.size)
            if np.any(self.ids[1:] == self.ids[:-1]):
                raise ValueError("two ions share an atom ID")
            self.onehot = np.zeros((0, 0))
            self._given = None
            self.history = LadderHistory(self.ladder, ids.size, self.dim)
        elif ids.size != self.ids.size:
            raise ValueError(f"this rank's share of the ions changed from {self.ids.size} to {ids.size}")
        values = np.asarray(values, dtype=float).reshape(ids.size, self.dim)
        if self._given is not None and np.array_equal(ids, self._given):
            pass  # the same order as last time (LAMMPS reorders atoms rarely)
        elif np.array_equal(ids, self.ids):  # given in ID order
            if not np.array_equal(species, self.species):
                bad = ids[self.species != species][0]
                raise ValueError(f"the species of atom ID {bad} changed during the run")
            self._check_constants(ids, constants, np.arange(ids.size))
            return values, self.history.push(values)
        else:
            rows = np.searchsorted(self.ids, ids)
            if ids.size and (rows.max() >= self.ids.size or np.any(self.ids[rows] != ids)):
                unknown = np.setdiff1d(ids, self.ids)
                raise ValueError(f"new atom IDs appeared among the ions (e.g. {unknown[0]}) while others "
                                 "left: the set of ions changed")
            self._given, self._given_species, self._take = ids.copy(), self.species[rows], np.argsort(rows)
        if not np.array_equal(species, self._given_species):
            bad = ids[self._given_species != species][0]
            raise ValueError(f"the species of atom ID {bad} changed during the run")
        self._check_constants(ids, constants, self._take)
        now = np.take(values, self._take, axis=0)  # now[rows] = values, as a gather (faster)
        return now, self.history.push(now)

    def _check_constants(self, ids: np.ndarray, constants: np.ndarray | None, take: np.ndarray) -> None:
        """The per-ion constants (charges) must stay those of the history's start: a change
        (fix adapt, set charge) would make the displacement sums mean nothing."""
        if constants is None:
            return
        now = np.take(np.asarray(constants, dtype=float), take)
        changed = np.flatnonzero(np.abs(now - self.constants) > 1e-12 * np.maximum(1.0, np.abs(self.constants)))
        if changed.size:
            k = changed[0]
            raise ValueError(f"the charge of atom ID {self.ids[k]} changed from {self.constants[k]:g} to {now[k]:g} e "
                             "during the run (fix adapt, set charge?): the live Einstein-Helfand statistics follow "
                             "fixed charges; define the fix anew after changing charges")

    def moved(self, ids: np.ndarray, values: np.ndarray, tolerance: float) -> bool:
        """Whether ``values`` differ from the last stored ones of the same ions by more
        than ``tolerance`` (relative to max(1, |value|)), or the ions differ."""
        if self.history is None or self.history.k == 0:
            return False
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids)
        if ids.size != self.ids.size or (ids.size and (rows.max() >= self.ids.size or np.any(self.ids[rows] != ids))):
            return True
        last = self.history.last()[rows]
        values = np.asarray(values, dtype=float).reshape(last.shape)
        return bool(np.any(np.abs(values - last) > tolerance * np.maximum(1.0, np.abs(last))))

    def largest_step(self, ids: np.ndarray, values: np.ndarray) -> tuple[int, float]:
        """(atom ID, length) of the longest change of a row's value vector since the
        last stored evaluation, among the given ions that the history follows
        ((-1, 0.0) when nothing is stored yet)."""
        if self.history is None or self.history.k == 0 or not self.ids.size:
            return -1, 0.0
        ids = np.asarray(ids, dtype=np.int64)
        values = np.asarray(values, dtype=float).reshape(ids.size, -1)
        last = self.history.last()
        if np.array_equal(ids, self.ids):  # in row order (the usual case: no searching)
            now, rows = values, None
        elif self._given is not None and np.array_equal(ids, self._given):
            now, rows = np.take(values, self._take, axis=0), None
        else:
            rows = np.searchsorted(self.ids, ids)
            known = rows < self.ids.size
            known[known] = self.ids[rows[known]] == ids[known]
            if not known.any():
                return -1, 0.0
            now, rows = values[known], rows[known]
        step = now - (last if rows is None else last[rows])
        squares = np.einsum("ij,ij->i", step, step)
        k = int(np.argmax(squares))
        return int(self.ids[k] if rows is None else self.ids[rows[k]]), float(np.sqrt(squares[k]))

    def owned_by(self, rank: int, size: int) -> "TrackedIons":
        out = TrackedIons(self.ladder, self.dim)
        keep = np.flatnonzero(self.ids % size == rank)
        out.ids, out.species, out.constants = self.ids[keep], self.species[keep], self.constants[keep]
        out.history = self.history.rows(keep) if self.history is not None else None
        return out

    def joined(self, other: "TrackedIons") -> "TrackedIons":
        """Two ranks' disjoint ions in one (their histories cover the same evaluations)."""
        if np.intersect1d(self.ids, other.ids).size:
            raise ValueError("cannot join histories that follow the same ions")
        if other.history is None:
            return self
        if self.history is None:
            return other
        out = TrackedIons(self.ladder, self.dim)
        ids = np.concatenate([self.ids, other.ids])
        order = np.argsort(ids, kind="stable")
        out.ids, out.species = ids[order], np.concatenate([self.species, other.species])[order]
        out.constants = np.concatenate([self.constants, other.constants])[order]
        out.history = LadderHistory.stack([self.history, other.history], order)
        return out

    def state(self) -> dict[str, np.ndarray]:
        out = {"ids": self.ids, "species": self.species, "constants": self.constants,
               "active": np.array(self.history is not None)}
        if self.history is not None:
            out.update(self.history.state("history_"))
        return out

    @classmethod
    def from_state(cls, ladder: Ladder, dim: int, state: dict[str, np.ndarray]) -> "TrackedIons":
        out = cls(ladder, dim)
        out.ids = np.array(state["ids"], dtype=np.int64)
        out.species = np.array(state["species"], dtype=np.int64)
        out.constants = np.array(state["constants"], dtype=float)
        if bool(state["active"]):
            out.history = LadderHistory.from_state(ladder, state, "history_", dim)
        return out


class IonHistoryReducer(Reducer):
    """A reducer whose sums come from the ions it follows (on each rank, the ions whose
    atom ID modulo the ranks is its rank): the merge of two ranks' or runs' sums, each
    rank's share of merged state, and the state as arrays are the same for all of them.
    A subclass is built as ``cls(nlags, n_species, p)`` and sets ``sums`` [any shape],
    ``ions`` (a :class:`TrackedIons` of width ``dim``) and ``ladder``."""

    dim: ClassVar[int]
    nlags: int
    n_species: int
    p: int
    sums: np.ndarray
    ions: TrackedIons
    ladder: Ladder

    @abstractmethod
    def __init__(self, nlags: int, n_species: int, p: int) -> None: ...

    @property
    def settings(self) -> tuple[int, int, int]:
        return self.nlags, self.n_species, self.p

    def merge(self: H, other: H) -> None:
        """Add another reducer's sums (other ions, or another run); the ion histories of
        two ranks of one run are joined."""
        if self.settings != other.settings:
            raise ValueError(f"cannot merge {type(self).__name__} reducers with different lags or species "
                             f"({self.settings} and {other.settings})")
        self.sums += other.sums
        self.ions = self.ions.joined(other.ions)

    def for_rank(self: H, rank: int, size: int) -> H:
        out = type(self)(*self.settings)
        if rank == 0:
            out.sums = self.sums.copy()
        out.ions = self.ions.owned_by(rank, size)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"settings": np.array(self.settings), "sums": self.sums,
                **{f"ions/{k}": v for k, v in self.ions.state().items()}}

    @classmethod
    def from_state(cls: type[H], state: dict[str, np.ndarray]) -> H:
        nlags, n_species, p = (int(v) for v in state["settings"])
        out = cls(nlags, n_species, p)
        out.sums = np.array(state["sums"], dtype=float).reshape(out.sums.shape)
        out.ions = TrackedIons.from_state(out.ladder, cls.dim, {k[5:]: v for k, v in state.items()
                                                                if k.startswith("ions/")})
        return out


H = TypeVar("H", bound=IonHistoryReducer)
