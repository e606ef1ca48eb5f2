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


def free_ions_and_rattling_pairs(n_free_pairs: int, n_bound: int, n_frames: int,
                                 d_a2_per_ps: float, frame_ps: float, relax_ps: float,
                                 amplitude_a: float, seed: int, box: float = 40.0):
    """Free Brownian cations and anions (diffusion D) plus bound cation–anion pairs
    whose centres diffuse with D and whose separation vector u rattles as an
    Ornstein–Uhlenbeck process (relaxation time ``relax_ps``, per-component
    standard deviation ``amplitude_a``). A pair adds Δu to ΔM: its contribution
    6 s² (1 − exp(−τ/τ_r)) to ⟨|ΔM|²⟩ grows linearly for τ ≪ τ_r (it looks
    diffusive) and then saturates, so only the free ions conduct:
    ⟨|ΔM|²⟩ → 2 n_free_pairs · 6 D τ + const.

    Returns (positions [n_frames, n_ions, 3] unwrapped, types, charges, box)."""
    rng = np.random.default_rng(seed)
    n_free = 2 * n_free_pairs
    step = np.sqrt(2 * d_a2_per_ps * frame_ps)
    free = np.concatenate([rng.random((1, n_free, 3)) * box,
                           rng.normal(scale=step, size=(n_frames - 1, n_free, 3))]).cumsum(axis=0)
    centres = np.concatenate([rng.random((1, n_bound, 3)) * box,
                              rng.normal(scale=step, size=(n_frames - 1, n_bound, 3))]).cumsum(axis=0)
    decay = np.exp(-frame_ps / relax_ps)
    kicks = rng.normal(scale=amplitude_a * np.sqrt(1 - decay**2), size=(n_frames, n_bound, 3))
    u = np.empty((n_frames, n_bound, 3))
    u[0] = rng.normal(scale=amplitude_a, size=(n_bound, 3))
    for k in range(1, n_frames):
        u[k] = decay * u[k - 1] + kicks[k]
    bond = np.array([3.0, 0.0, 0.0])
    positions = np.concatenate([free, centres + bond + u / 2, centres - bond - u / 2], axis=1)
    types = np.concatenate([np.repeat([1, 2], n_free_pairs), np.repeat([1, 2], n_bound)])
    charges = np.where(types == 1, 1.0, -1.0)
    return positions, types, charges, box
