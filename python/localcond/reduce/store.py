"""Save, load and all-reduce reducers.

A reducer file is an NPZ archive: for each named reducer its state arrays
(``NAME/KEY``) and a JSON header (``__header__``) with the format version,
each reducer's kind and the caller's metadata. Files are written to a
temporary name and renamed, so a partial file is never left as if complete.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from localcond.errors import LocalcondError

FORMAT_VERSION = 1
R = TypeVar("R", bound="Reducer")


class Reducer(ABC):
    kind: ClassVar[str]
    registry: ClassVar[dict[str, type["Reducer"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Reducer.registry[cls.kind] = cls

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_state(cls: type[R], state: dict[str, np.ndarray]) -> R: ...

    @abstractmethod
    def merge(self: R, other: R) -> None: ...

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


def save(path: str | Path, reducers: dict[str, Reducer], metadata: dict[str, Any]) -> Path:
    path = Path(path)
    header = {"format_version": FORMAT_VERSION, "kinds": {n: r.kind for n, r in reducers.items()},
              "metadata": metadata}
    arrays = {f"{name}/{key}": np.asarray(value)
              for name, r in reducers.items() for key, value in r.state().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, __header__=json.dumps(header), **arrays)
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> tuple[dict[str, Reducer], dict[str, Any]]:
    # importing the reducer modules registers their kinds
    from localcond.reduce import blocking, eh_live, histogram, moments, spatial, timecorr  # noqa: F401

    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        header = json.loads(str(data["__header__"]))
    except (OSError, KeyError, ValueError) as exc:
        raise LocalcondError(f"'{path}' is not a localcond reducer file: {exc}") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise LocalcondError(f"'{path}': reducer format {header.get('format_version')} is not "
                             f"supported (this localcond reads {FORMAT_VERSION})")
    reducers = {}
    for name, kind in header["kinds"].items():
        if kind not in Reducer.registry:
            raise LocalcondError(f"'{path}': unknown reducer kind {kind!r}")
        prefix = name + "/"
        state = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
        reducers[name] = Reducer.registry[kind].from_state(state)
    return reducers, header["metadata"]
