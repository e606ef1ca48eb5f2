"""Save and load reducers.

A reducer file is an NPZ archive: for each named reducer its state arrays
(``NAME/KEY``) and a JSON header (``__header__``) with the format version,
each reducer's kind and the caller's metadata. Files are written to a
temporary name and renamed, so a partial file is never left as if complete.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from localcond.errors import LocalcondError
from localcond.io.files import atomic_path
from localcond.engine.reducers.base import Reducer

FORMAT_VERSION = 2  # 2: time correlations on a multiple-tau ladder, Einstein-Helfand in two parts


def _write(handle: Any, reducers: dict[str, Reducer], metadata: dict[str, Any]) -> None:
    header = {"format_version": FORMAT_VERSION, "kinds": {n: r.kind for n, r in reducers.items()},
              "metadata": metadata}
    arrays = {f"{name}/{key}": np.asarray(value)
              for name, r in reducers.items() for key, value in r.state().items()}
    np.savez(handle, __header__=json.dumps(header), **arrays)


def save(path: str | Path, reducers: dict[str, Reducer], metadata: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        _write(handle, reducers, metadata)
    return path


def to_bytes(reducers: dict[str, Reducer], metadata: dict[str, Any]) -> bytes:
    """The reducer file's content in memory (for LAMMPS restart files)."""
    buffer = io.BytesIO()
    _write(buffer, reducers, metadata)
    return buffer.getvalue()


def from_bytes(data: bytes, what: str) -> tuple[dict[str, Reducer], dict[str, Any]]:
    return load(io.BytesIO(data), what)


def load(path: str | Path | io.BytesIO, what: str | None = None) -> tuple[dict[str, Reducer], dict[str, Any]]:
    # importing the reducer modules registers their kinds
    from localcond.engine.reducers import blocking, eh_live, histogram, members, moments, spatial, timecorr  # noqa: F401

    name_of = what or f"'{path}'"
    try:
        data = np.load(path, allow_pickle=False)
        header = json.loads(str(data["__header__"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LocalcondError(f"{name_of} is not a localcond reducer file (or is truncated): {exc}") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise LocalcondError(f"{name_of}: reducer format {header.get('format_version')} is not "
                             f"supported (this localcond reads {FORMAT_VERSION})")
    reducers = {}
    for name, kind in header["kinds"].items():
        if kind not in Reducer.registry:
            raise LocalcondError(f"{name_of}: unknown reducer kind {kind!r}")
        prefix = name + "/"
        state = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
        try:
            reducers[name] = Reducer.registry[kind].from_state(state)
        except (KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise LocalcondError(f"{name_of}: reducer {name!r} is damaged: {exc}") from None
    return reducers, header["metadata"]
