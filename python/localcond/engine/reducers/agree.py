"""Failures that every MPI rank agrees on.

A collective step (an all-reduce, an all-to-all) hangs when one rank raises
before it and the others wait inside it. Code that may fail on some ranks
only runs inside :func:`agreed`: every rank learns whether any rank failed,
and then every rank raises, the failing ones their own error and the others
:class:`FailedElsewhere` with the first failing rank's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from localcond.errors import LocalcondError

T = TypeVar("T")


class FailedElsewhere(LocalcondError):
    """Another MPI rank failed; this one stops with its message."""


def agreed(comm: Any, work: Callable[[], T]) -> T:
    results: list[T] = []
    error: Exception | None = None
    try:
        results.append(work())
    except Exception as exc:  # noqa: BLE001 -- any failure must reach every rank
        error = exc
    if comm is not None and comm.size > 1:
        messages = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
        if failed and error is None:
            rank, message = failed[0]
            raise FailedElsewhere(f"MPI rank {rank} failed: {message}")
    if error is not None:
        raise error
    return results[0]
