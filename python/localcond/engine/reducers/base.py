"""The reducer interface and its exact combination over MPI ranks.

A reducer accumulates statistics of λ (and, for the time correlations, of ion
histories) so that two reducers fed disjoint data ``merge`` into the reducer of
all the data. ``state()`` / ``from_state()`` round-trip it through plain arrays
(files, restart buffers); ``for_rank`` gives the share one MPI rank keeps when
a run continues from merged state, so that merging the shares again gives the
merged state back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import numpy as np

R = TypeVar("R", bound="Reducer")


class Reducer(ABC):
    kind: ClassVar[str]
    registry: ClassVar[dict[str, type["Reducer"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # a concrete reducer; shared bases name no kind
            Reducer.registry[cls.kind] = cls

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_state(cls: type[R], state: dict[str, np.ndarray]) -> R: ...

    @abstractmethod
    def merge(self: R, other: R) -> None: ...

    @abstractmethod
    def for_rank(self: R, rank: int, size: int) -> R:
        """This rank's share of merged state (additive sums on rank 0 only, values
        that every rank holds alike on all, ion histories on the ion's owner rank,
        atom ID mod size)."""

    def copy(self: R) -> R:
        return type(self).from_state({k: np.array(v, copy=True) for k, v in self.state().items()})


def allreduce(reducer: R, comm: Any) -> R:
    """The reducer merged over all ranks of an mpi4py communicator, in rank order
    (the same result on every rank)."""
    states = comm.allgather(reducer.state())
    merged = type(reducer).from_state(states[0])
    for state in states[1:]:
        merged.merge(type(reducer).from_state(state))
    return merged


def zeroed_like(reducer: R, keys: tuple[str, ...]) -> R:
    """A copy of ``reducer`` with the state arrays named in ``keys`` set to zero."""
    state = {k: np.array(v, copy=True) for k, v in reducer.state().items()}
    for key in keys:
        state[key][...] = 0
    return type(reducer).from_state(state)
