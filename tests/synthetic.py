"""Synthetic ion trajectories with known transport, written as LAMMPS dumps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dump(path: Path, steps, box: float, types, charges, positions) -> Path:
    """positions: [n_frames, n_ions, 3] unwrapped (Å)."""
    ids = np.arange(1, len(types) + 1)
    with open(path, "w") as handle:
        for step, x in zip(steps, positions):
            handle.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(ids)}\n")
            handle.write("ITEM: BOX BOUNDS pp pp pp\n" + f"0 {box}\n" * 3)
            handle.write("ITEM: ATOMS id type q xu yu zu\n")
            rows = np.column_stack([ids, types, charges, x])
            np.savetxt(handle, rows, fmt=["%d", "%d", "%.6g", "%.17g", "%.17g", "%.17g"])
    return path


def brownian(path: Path, n_pairs: int, n_frames: int, d_a2_per_ps: float, frame_ps: float,
             seed: int, box: float = 40.0, timestep_fs: float = 2.0) -> Path:
    """Independent Brownian cations and anions with diffusion coefficient D."""
    rng = np.random.default_rng(seed)
    n = 2 * n_pairs
    steps = rng.normal(scale=np.sqrt(2 * d_a2_per_ps * frame_ps), size=(n_frames - 1, n, 3))
    x = np.concatenate([rng.random((1, n, 3)) * box, steps]).cumsum(axis=0)
    types = np.repeat([1, 2], n_pairs)
    charges = np.repeat([1.0, -1.0], n_pairs)
    every = int(round(frame_ps * 1000 / timestep_fs))
    return write_dump(path, np.arange(n_frames) * every, box, types, charges, x)


def bound_pairs(path: Path, n_pairs: int, n_frames: int, d_a2_per_ps: float, frame_ps: float,
                seed: int, box: float = 40.0, timestep_fs: float = 2.0) -> Path:
    """Neutral cation-anion pairs moving together (pair centres Brownian), each ion
    jittering by a bounded, non-accumulating offset."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=np.sqrt(2 * d_a2_per_ps * frame_ps), size=(n_frames - 1, n_pairs, 3))
    centres = np.concatenate([rng.random((1, n_pairs, 3)) * box, steps]).cumsum(axis=0)
    bond = np.array([1.5, 0.0, 0.0])
    jitter = rng.normal(scale=0.1, size=(n_frames, 2 * n_pairs, 3))
    x = np.concatenate([centres + bond, centres - bond], axis=1) + jitter
    types = np.repeat([1, 2], n_pairs)
    charges = np.repeat([1.0, -1.0], n_pairs)
    every = int(round(frame_ps * 1000 / timestep_fs))
    return write_dump(path, np.arange(n_frames) * every, box, types, charges, x)
