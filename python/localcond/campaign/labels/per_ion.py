"""Per-ion labels λ_i(t0; τ) (doc/design.md §1), in S cm² mol⁻¹:

    exact      λ_i = N · P · q_i Δr_i · ΔM / τ            P = N_A e² / (6 k_B T n_salt)
    slope      λ_i = N · P · [q_i Δr_i·ΔM (τ2) − q_i Δr_i·ΔM (τ1)] / (τ2 − τ1)
    truncated  ΔM replaced by ΔM_i^R = Σ_{j: r_ij(t0) < R} q_j Δr_j (j = i included,
               minimum image at t0): less noisy, biased when R is too short

with N the number of ions, Δr over [t0, t0+τ] from unwrapped positions. The
mean of the exact labels over ions and the same origins is the Einstein–
Helfand Λ of those origins, identically.

A dataset (NPZ) holds, per origin t0: the frame (positions, cell) and the
labels; plus the ions' IDs, types and charges and the metadata that made it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.errors import LocalcondError
from localcond.campaign.labels.trajectory import IonSet, count_frames, ion_frames
from localcond.units import concentration_mol_per_l, molar_conductivity_prefactor
from localcond.engine.neighbors import periodic_edges
from localcond.io.files import atomic_path


@dataclass
class LabelSettings:
    timestep_fs: float
    temperature_k: float
    tau_ps: float
    tau_window_ps: tuple[float, float] | None = None
    radii: tuple[float, ...] = ()
    origin_stride: int = 1
    n_salt: float | None = None
    ion_types: tuple[int, ...] | None = None  # atom types that are ions (default: charged atoms)
    molecules: bool = False  # each ion-type atom is a molecular ion's centre (the dump's mol column)


def _lag(tau_ps: float, frame_ps: float, what: str) -> int:
    lag = int(round(tau_ps / frame_ps))
    if lag < 1 or abs(lag * frame_ps - tau_ps) > 1e-6 * max(tau_ps, frame_ps):
        raise LocalcondError(f"{what} {tau_ps:g} ps is not a positive multiple of the frame spacing {frame_ps:g} ps")
    return lag


def _truncated_dm(positions_t0: np.ndarray, cell: np.ndarray, pbc, qdr: np.ndarray,
                  radius: float) -> np.ndarray:
    """ΔM_i^R for every ion i: Σ_j over ions within `radius` of i at t0 (and i itself)."""
    widths = np.abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    if any(p and radius >= w / 2 for p, w in zip(pbc, widths)):
        raise LocalcondError(f"truncation radius {radius:g} A must be below half the box width ({widths.min() / 2:g} A)")
    (i, j), _ = periodic_edges(positions_t0, cell, pbc, radius)
    out = qdr.copy()
    np.add.at(out, i, qdr[j])
    return out


def compute_labels(path: str | Path, settings: LabelSettings) -> tuple[IonSet, dict[str, np.ndarray], dict]:
    """Labels for one trajectory: (ions, arrays, metadata)."""
    path = Path(path)
    n_frames = count_frames(path)
    frames = ion_frames(path, settings.timestep_fs, settings.ion_types, settings.molecules)
    buffer: list = []
    ions: IonSet | None = None
    frame_ps = None
    lag = lag1 = lag2 = 0
    out: dict[str, list] = {"time_ps": [], "timestep": [], "positions": [], "cell": [], "exact": []}
    if settings.tau_window_ps:
        out["slope"] = []
    for radius in settings.radii:
        out[f"truncated_R{radius:g}"] = []
    for ions, frame in frames:
        if frame.index == 1:
            frame_ps = frame.time_ps
            lag = _lag(settings.tau_ps, frame_ps, "tau")
            if settings.tau_window_ps:
                lag1 = _lag(settings.tau_window_ps[0], frame_ps, "tau1")
                lag2 = _lag(settings.tau_window_ps[1], frame_ps, "tau2")
                if lag2 <= lag1:
                    raise LocalcondError("the slope window needs tau1 < tau2")
            longest = max(lag, lag2)
            if longest >= n_frames:
                raise LocalcondError(
                    f"tau {longest * frame_ps:g} ps is not shorter than the trajectory "
                    f"({(n_frames - 1) * frame_ps:g} ps)")
        buffer.append(frame)  # the origin and the frames after it, up to the longest lag
        if frame.index >= 1 and len(buffer) > max(lag, lag2):
            origin = buffer.pop(0)
            if origin.index % settings.origin_stride == 0:
                _label_origin(ions, origin, buffer, lag, lag1, lag2, settings, out)
    if ions is None or frame_ps is None:
        raise LocalcondError(f"{path}: fewer than two frames")
    if not out["exact"]:
        raise LocalcondError(f"{path}: no time origin has a full window of {max(lag, lag2) * frame_ps:g} ps")
    n_salt = settings.n_salt or float((ions.charges > 0).sum())
    metadata = {
        "dump": str(path.resolve()),
        "tau_ps": lag * frame_ps,
        "tau_window_ps": [lag1 * frame_ps, lag2 * frame_ps] if settings.tau_window_ps else None,
        "truncation_radii_A": list(settings.radii),
        "temperature_k": settings.temperature_k,
        "timestep_fs": settings.timestep_fs,
        "frame_spacing_ps": frame_ps,
        "origin_stride": settings.origin_stride,
        "n_salt": n_salt,
        "concentration_mol_per_l": concentration_mol_per_l(n_salt, ions.volume_a3),
        "volume_A3": ions.volume_a3,
        "unit": "S cm^2 mol^-1",
        "definition": "lambda_i = N * N_A e^2 q_i dr_i . dM / (6 kB T n_salt tau)",
        "localcond_version": __version__,
    }
    arrays = {k: np.asarray(v) for k, v in out.items()}
    return ions, arrays, metadata


def _label_origin(ions: IonSet, origin, later: list, lag: int, lag1: int, lag2: int,
                  settings: LabelSettings, out: dict[str, list]) -> None:
    n_salt = settings.n_salt or float((ions.charges > 0).sum())
    scale = ions.n_ions * molar_conductivity_prefactor(settings.temperature_k, n_salt)
    q = ions.charges[:, None]

    def qdr_at(k: int) -> np.ndarray:
        return q * (later[k - 1].positions - origin.positions)

    qdr = qdr_at(lag)
    dm = qdr.sum(axis=0)
    tau = later[lag - 1].time_ps - origin.time_ps
    out["exact"].append(scale * (qdr @ dm) / tau)
    if "slope" in out:
        q1, q2 = qdr_at(lag1), qdr_at(lag2)
        t1 = later[lag1 - 1].time_ps - origin.time_ps
        t2 = later[lag2 - 1].time_ps - origin.time_ps
        out["slope"].append(scale * (q2 @ q2.sum(axis=0) - q1 @ q1.sum(axis=0)) / (t2 - t1))
    for radius in settings.radii:
        dm_r = _truncated_dm(origin.positions, ions.cell, ions.pbc, qdr, radius)
        out[f"truncated_R{radius:g}"].append(scale * np.einsum("ix,ix->i", qdr, dm_r) / tau)
    out["time_ps"].append(origin.time_ps)
    out["timestep"].append(origin.timestep)
    out["positions"].append(origin.positions.astype(np.float32))
    out["cell"].append(origin.dump.cell)


def write_dataset(path: str | Path, ions: IonSet, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle, id=ions.ids, type=ions.types, charge=ions.charges, pbc=np.array(ions.pbc),
            metadata=json.dumps(metadata), **{f"label_{k}" if k not in
                                              ("time_ps", "timestep", "positions", "cell") else k: v
                                              for k, v in arrays.items()},
        )
    return path


def truncation_summary(arrays: dict[str, np.ndarray]) -> list[dict]:
    """Mean and variance of each truncated label relative to the exact one."""
    exact = arrays["exact"]
    rows = []
    for key in sorted(k for k in arrays if k.startswith("truncated_R")):
        values = arrays[key]
        rows.append({
            "radius_A": float(key.removeprefix("truncated_R")),
            "mean_over_exact_mean": float(values.mean() / exact.mean()),
            "variance_reduction": float(exact.var() / values.var()),
        })
    return rows


def label_files(paths: Sequence[str | Path], settings: LabelSettings, out_dir: str | Path) -> list[Path]:
    written = []
    for path in paths:
        ions, arrays, metadata = compute_labels(path, settings)
        metadata["truncation"] = truncation_summary(arrays)
        target = Path(out_dir) / (Path(path).name.split(".")[0] + ".labels.npz")
        written.append(write_dataset(target, ions, arrays, metadata))
    return written
