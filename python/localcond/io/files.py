"""Files written whole or not at all: write to a temporary file in the same
directory, then rename over the target (atomic on POSIX), so a crash never
leaves a partial file under the final name. JSON read with a clear error."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from localcond.errors import LocalcondError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block ends
    without an exception and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def output_directory(directory: Path, what: str) -> Iterator[Path]:
    """Create ``directory`` (and missing parents) for outputs written inside the block.
    On an OSError there (a full disk, no permission) the directories this call created
    are removed again when empty, and the error becomes a LocalcondError naming ``what``."""
    created = [d for d in [directory, *directory.parents] if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
    except OSError as exc:
        raise LocalcondError(f"cannot write {what}: {exc.strerror or exc}"
                             + (f" ('{exc.filename}')" if exc.filename else "")) from None
    finally:
        for made in created:  # deepest first
            if made.exists() and not any(made.iterdir()):
                made.rmdir()


@contextmanager
def output_files(paths: list[Path], what: str) -> Iterator[list[Path]]:
    """Output files in one directory, written together or not at all: yields a
    temporary path for each (next to it), which replace them only when every one was
    written; errors as :func:`output_directory`."""
    temps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in paths]
    directories = {p.parent for p in paths}
    if len(directories) != 1:
        raise ValueError("output_files writes into one directory")
    with output_directory(directories.pop(), what):
        try:
            yield temps
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
        finally:
            for tmp in temps:
                if tmp.exists():
                    tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, what: str):
    """Parse a JSON file; a missing or malformed file is a LocalcondError naming ``what``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LocalcondError(f"cannot read {what} {path}: {exc}") from None


def check_writable_prefix(prefix: str) -> None:
    """Fail now, not at the end of a run, when files ``PREFIX.*`` cannot be written: the
    directory must exist and accept a new file (tried with a temporary one)."""
    import tempfile

    directory = Path(prefix).parent
    if not directory.is_dir():
        raise LocalcondError(f"file prefix '{prefix}': directory '{directory}' does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".{Path(prefix).name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise LocalcondError(f"file prefix '{prefix}': cannot write in '{directory}' ({exc.strerror})") from None


T = TypeVar("T")


def read_dataclass(path: str | Path, cls: type[T], what: str) -> T:
    """A dataclass from a JSON object's fields; unknown keys and wrong arguments are a
    LocalcondError naming the file."""
    return dataclass_from(read_json(path, what), cls, path)


def dataclass_from(data: dict, cls: type[T], where: str | Path) -> T:
    """A dataclass from a JSON object already read from ``where`` (see :func:`read_dataclass`)."""
    known = set(getattr(cls, "__dataclass_fields__"))
    unknown = sorted(set(data) - known)
    if unknown:
        raise LocalcondError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise LocalcondError(f"{where}: {exc}") from None
