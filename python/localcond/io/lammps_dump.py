"""Streaming reader of LAMMPS text dumps (``dump custom`` / ``dump atom``).

Frames are read one at a time (memory does not grow with the trajectory).
Files ending in ``.gz`` are decompressed on the fly. Orthogonal and triclinic
boxes are supported; boundary flags (pp, ff, ss, fs, ...) give the periodicity.
Lengths are in the dump's units (Å for ``units real``/``metal``).
Every format problem raises DumpFormatError naming the file, frame and line.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from localcond.errors import DumpFormatError

POSITION_COLUMNS = (("xu", "yu", "zu"), ("x", "y", "z"))
SCALED_COLUMNS = (("xsu", "ysu", "zsu"), ("xs", "ys", "zs"))
IMAGE_COLUMNS = ("ix", "iy", "iz")


@dataclass
class DumpFrame:
    """One frame. ``cell`` rows are the box vectors a, b, c; ``origin`` is (xlo, ylo, zlo)."""

    path: str
    index: int
    timestep: int
    cell: np.ndarray
    origin: np.ndarray
    pbc: tuple[bool, bool, bool]
    columns: dict[str, np.ndarray]

    @property
    def n_atoms(self) -> int:
        return len(self.columns["id"])

    @property
    def volume(self) -> float:
        # LAMMPS cells are triangular (a along x, b in the xy plane): V = lx * ly * lz
        return float(np.prod(np.diag(self.cell)))

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise DumpFormatError(
                f"{self.path}, frame {self.index} (step {self.timestep}): no '{name}' column "
                f"(columns: {' '.join(self.columns)})"
            )
        return self.columns[name]

    @property
    def ids(self) -> np.ndarray:
        return self.column("id").astype(np.int64)

    @property
    def types(self) -> np.ndarray:
        return self.column("type").astype(np.int64)

    def positions(self, unwrapped: bool = False) -> np.ndarray:
        """Cartesian positions (Å). With ``unwrapped``: xu/yu/zu (or xsu…), or wrapped
        x/y/z (or xs…) with the image flags ix/iy/iz, unwrapped as r + ix a + iy b + iz c
        (the cell's rows a, b, c)."""
        images = all(n in self.columns for n in IMAGE_COLUMNS)
        for names in POSITION_COLUMNS:
            if all(n in self.columns for n in names):
                if unwrapped and names[0] == "x":
                    if not images:
                        continue
                    return np.stack([self.columns[n] for n in names], axis=1) + self._image_shift()
                return np.stack([self.columns[n] for n in names], axis=1)
        for names in SCALED_COLUMNS:
            if all(n in self.columns for n in names):
                if unwrapped and names[0] == "xs" and not images:
                    continue
                scaled = np.stack([self.columns[n] for n in names], axis=1)
                shift = self._image_shift() if unwrapped and names[0] == "xs" else 0.0
                return self.origin + scaled @ self.cell + shift
        wanted = "xu yu zu, or x y z with ix iy iz" if unwrapped else "x y z or xu yu zu"
        raise DumpFormatError(
            f"{self.path}, frame {self.index} (step {self.timestep}): no position columns "
            f"({wanted}); columns are: {' '.join(self.columns)}"
        )


    def _image_shift(self) -> np.ndarray:
        flags = np.stack([self.columns[n] for n in IMAGE_COLUMNS], axis=1)
        if not np.all(flags == np.round(flags)):
            raise DumpFormatError(f"{self.path}, frame {self.index} (step {self.timestep}): image flags "
                                  "ix iy iz are not integers")
        return flags @ self.cell


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return open(path, "r")


class _Lines:
    def __init__(self, handle: IO[str], path: Path) -> None:
        self.handle = handle
        self.path = path
        self.number = 0
        self.frame = 0

    def fail(self, message: str) -> DumpFormatError:
        return DumpFormatError(f"{self.path}, frame {self.frame} (line {self.number}): {message}")

    def next(self, what: str) -> str:
        try:
            line = self.handle.readline()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise self.fail(f"cannot read: {exc}") from None
        if not line:
            raise self.fail(f"file ends where {what} was expected (truncated dump?)")
        self.number += 1
        return line.rstrip("\n")


def _box(lines: _Lines, header: str) -> tuple[np.ndarray, np.ndarray, tuple[bool, bool, bool]]:
    words = header.split()[3:]
    triclinic = words[:3] == ["xy", "xz", "yz"]
    if words[:3] == ["abc", "origin"] or "abc" in words:
        raise lines.fail("general triclinic boxes (ITEM: BOX BOUNDS abc origin) are not supported")
    flags = words[3:] if triclinic else words
    if len(flags) != 3:
        flags = ["pp", "pp", "pp"]
    pbc = tuple(f == "pp" for f in flags)
    rows = []
    for axis in "xyz":
        try:
            rows.append([float(v) for v in lines.next(f"{axis} bounds").split()])
        except ValueError:
            raise lines.fail(f"{axis} box bounds are not numbers") from None
    need = 3 if triclinic else 2
    if any(len(r) < need for r in rows):
        raise lines.fail(f"box bounds need {need} numbers per line")
    (xlo_b, xhi_b), (ylo_b, yhi_b), (zlo, zhi) = (r[:2] for r in rows)
    xy, xz, yz = (rows[0][2], rows[1][2], rows[2][2]) if triclinic else (0.0, 0.0, 0.0)
    xlo = xlo_b - min(0.0, xy, xz, xy + xz)
    xhi = xhi_b - max(0.0, xy, xz, xy + xz)
    ylo = ylo_b - min(0.0, yz)
    yhi = yhi_b - max(0.0, yz)
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    if min(xhi - xlo, yhi - ylo, zhi - zlo) <= 0:
        raise lines.fail("box has a non-positive length")
    return cell, np.array([xlo, ylo, zlo]), pbc  # type: ignore[return-value]


def read_dump(path: str | Path) -> Iterator[DumpFrame]:
    """Yield the frames of a LAMMPS text dump in file order."""
    path = Path(path)
    if not path.is_file():
        raise DumpFormatError(f"dump file '{path}' does not exist")
    with _open(path) as handle:
        lines = _Lines(handle, path)
        while True:
            try:
                first = handle.readline()
            except (OSError, EOFError) as exc:
                raise lines.fail(f"cannot read: {exc}") from None
            if not first:
                return
            lines.number += 1
            if not first.strip():
                continue
            if not first.startswith("ITEM: TIMESTEP"):
                raise lines.fail(f"expected 'ITEM: TIMESTEP', got {first.strip()[:60]!r}")
            try:
                timestep = int(lines.next("the timestep").split()[0])
            except (ValueError, IndexError):
                raise lines.fail("timestep is not an integer") from None
            header = lines.next("ITEM: NUMBER OF ATOMS")
            if not header.startswith("ITEM: NUMBER OF ATOMS"):
                raise lines.fail(f"expected 'ITEM: NUMBER OF ATOMS', got {header[:60]!r}")
            try:
                n_atoms = int(lines.next("the number of atoms"))
            except ValueError:
                raise lines.fail("number of atoms is not an integer") from None
            header = lines.next("ITEM: BOX BOUNDS")
            if not header.startswith("ITEM: BOX BOUNDS"):
                raise lines.fail(f"expected 'ITEM: BOX BOUNDS', got {header[:60]!r}")
            cell, origin, pbc = _box(lines, header)
            header = lines.next("ITEM: ATOMS")
            if not header.startswith("ITEM: ATOMS"):
                raise lines.fail(f"expected 'ITEM: ATOMS', got {header[:60]!r}")
            names = header.split()[2:]
            if len(set(names)) != len(names):
                raise lines.fail(f"duplicate column names in {header!r}")
            body = [lines.next(f"atom line {k + 1} of {n_atoms}") for k in range(n_atoms)]
            try:
                values = np.array(" ".join(body).split(), dtype=np.float64)
            except ValueError:
                raise lines.fail("atom lines contain non-numeric values") from None
            if values.size != n_atoms * len(names):
                raise lines.fail(
                    f"atom lines hold {values.size} numbers, expected {n_atoms} x {len(names)} columns"
                )
            table = values.reshape(n_atoms, len(names))
            columns = {name: table[:, k] for k, name in enumerate(names)}
            if "id" not in columns:
                raise lines.fail("no 'id' column (dump custom needs 'id type ...')")
            yield DumpFrame(str(path), lines.frame, timestep, cell, origin, pbc, columns)  # type: ignore[arg-type]
            lines.frame += 1
