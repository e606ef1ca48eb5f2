"""``localcond replicas``: fresh, independent replicas of a grid's systems, with
dense per-ion labels at short lags — the data that can test a local
conductivity field ion by ion and check the grid's own error bars.

A replica file (JSON, e.g. ``training/replicas.json``) names a base grid
(``training/grid.json``) and, per system of that grid:

- a **fresh start** (minimisation and equilibration from new random positions
  and velocities: seeds are hashes of the replica set's own name, so every
  segment is independent of the grid's run) and ``segments`` production
  segments of the grid's length, each analysed as ``localcond generate``
  analyses a segment (displacement statistics in sub-blocks, committed in
  ``training/progress/<replica set>/<system>/``, resumable on a new machine);
- **dense labels** from each of the first ``dense_labels.segments`` production
  segments (default 1; segment 0 in ``<system>.npz``, segment k in
  ``<system>.seg<k>.npz``): ``origins[role]``
  origins every ``stride_ps`` from the start of the segment, each with the
  ions' positions (16-bit fractional, as in a training record) and, at every
  lag τ of ``lags_ps``, the per-ion quantity

      a_i(t0; τ) = q_i Δr_i(t0, τ) · ΔM(t0, τ) / τ      (e² Å² / ps, float16)

  from which the plain-form per-ion label is λ_i(t0; τ) = N P a_i with P the
  molar-conductivity prefactor (:func:`localcond.units.molar_conductivity_prefactor`,
  S cm² mol⁻¹ per e² Å² / ps) and N the number of ions; Σ_i a_i = |ΔM(τ)|²/τ,
  stored per origin and lag in float64 (``dm2``) so the labels' mean can be
  checked against the collective value independently;
- when all segments are done, the replica's Λ in the slope form at the base
  grid's window for that system (blocks = the stored sub-blocks), its
  species shares, and every window the rule tests — one row per system in
  the replica table (``training/replica_systems.json``).

Physics, units and the label forms: doc/design.md (§ The physics).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.campaign.dataset import DENSE_FORMAT, Segment, quantize, sha256, update_manifest
from localcond.errors import LocalcondError
from localcond.campaign.generate import git_commit
from localcond.campaign.long_lag import long_lag_check
from localcond.campaign.segments import Segments
from localcond.campaign.grid import GridSpec, SystemSpec, load_grid, seed
from localcond.io.files import atomic_path, read_json, write_json
from localcond.units import molar_conductivity_prefactor

FLOAT16_MAX = 6.0e4  # a_i beyond this is stored in float32 instead


@dataclass(frozen=True)
class ReplicaSpec:
    name: str
    path: Path
    base_grid: Path
    segments: int
    stride_ps: float
    lags_ps: tuple[float, ...]
    origins: dict[str, int]
    dense_segments: int = 1


def load_replica_spec(path: str | Path) -> ReplicaSpec:
    path = Path(path)
    spec = read_json(path, "replica file")
    try:
        dense = spec["dense_labels"]
        out = ReplicaSpec(name=spec["name"], path=path, base_grid=(path.parent / spec["base_grid"]).resolve(),
                          segments=int(spec["segments"]), stride_ps=float(dense["stride_ps"]),
                          lags_ps=tuple(float(t) for t in dense["lags_ps"]),
                          origins={k: int(v) for k, v in dense["origins"].items()},
                          dense_segments=int(dense.get("segments", 1)))
    except KeyError as exc:
        raise LocalcondError(f"replica file {path}: missing key {exc}") from None
    if out.segments < 1 or out.stride_ps <= 0 or not out.lags_ps:
        raise LocalcondError(f"replica file {path}: needs segments >= 1, stride_ps > 0 and some lags")
    if not 1 <= out.dense_segments <= out.segments:
        raise LocalcondError(f"replica file {path}: dense_labels.segments must be 1 ... segments "
                             f"({out.segments}), got {out.dense_segments}")
    return out


def dense_labels(segment: Segment, stride_frames: int, lag_frames: tuple[int, ...], n_origins: int,
                 ) -> dict[str, np.ndarray]:
    """Positions and a_i(t0; τ) (see the module docstring) at ``n_origins`` origins
    0, stride, 2·stride, … of one segment, for every lag (in frames)."""
    x = segment.positions
    last = (n_origins - 1) * stride_frames + max(lag_frames)
    if last >= len(x):
        raise LocalcondError(f"{segment.path}: {len(x)} frames cannot hold {n_origins} origins every "
                             f"{stride_frames} frames with lags up to {max(lag_frames)} frames")
    q = segment.ions.charges[:, None]
    origins = np.arange(n_origins) * stride_frames
    a = np.empty((n_origins, len(lag_frames), segment.ions.n_ions))
    dm2 = np.empty((n_origins, len(lag_frames)))
    for o_index, o in enumerate(origins):
        for l_index, lag in enumerate(lag_frames):
            qdr = q * (x[o + lag] - x[o])
            dm = qdr.sum(axis=0)
            tau = lag * segment.frame_ps
            a[o_index, l_index] = qdr @ dm / tau
            dm2[o_index, l_index] = dm @ dm / tau
    stored = a.astype(np.float16) if np.abs(a).max() < FLOAT16_MAX else a.astype(np.float32)
    positions = np.stack([quantize(x[o], segment.box_origin, segment.ions.cell) for o in origins])
    return {"positions_u16": positions, "time_ps": origins * segment.frame_ps,
            "lags_ps": np.asarray(lag_frames) * segment.frame_ps, "a": stored, "dm2_per_ps": dm2}


class ReplicaRun:
    """One system's replica: the grid's segment machinery under the replica set's name
    (so its own seeds and directories), plus the dense labels of its first
    ``dense_segments`` segments, each written before that segment's marker (so a marker
    means both are done)."""

    def __init__(self, spec: ReplicaSpec, grid: GridSpec, system: SystemSpec, data_dir: Path,
                 progress_dir: Path, records_dir: Path, log=print) -> None:
        self.spec, self.system, self.log = spec, system, log
        self.grid = replace(grid, name=spec.name)
        self.base_grid_name = grid.name
        self.segments = Segments(self.grid, system, data_dir, progress_dir, kinisi=False, log=log,
                                 before_marker=self._dense_from)
        self.dense_file = self.dense_path(records_dir, 0)
        self.records_dir = records_dir

    def dense_path(self, records_dir: Path, k: int) -> Path:
        suffix = "" if k == 0 else f".seg{k}"
        return records_dir / self.spec.name / f"{self.system.name}{suffix}.npz"

    def _dense_from(self, k: int, segment: Segment) -> None:
        if k < self.spec.dense_segments and not self.dense_path(self.records_dir, k).exists():
            self.write_dense(segment, k)

    def write_dense(self, segment: Segment, k: int = 0) -> Path:
        grid, spec = self.grid, self.spec
        stride = int(round(spec.stride_ps / grid.frame_ps))
        lags = tuple(int(round(t / grid.frame_ps)) for t in spec.lags_ps)
        arrays = dense_labels(segment, stride, lags, spec.origins[self.system.role])
        ions = segment.ions
        n_salt = float((ions.charges > 0).sum())
        meta = {
            "format": DENSE_FORMAT, "replica_set": spec.name, "base_grid": self.base_grid_name,
            "system": self.system.name, "role": self.system.role,
            "concentration_nominal_mol_per_l": self.system.conc, "dielectric_constant": self.system.eps,
            "temperature_k": grid.temperature_k, "n_salt": n_salt, "n_ions": int(ions.n_ions),
            "volume_A3": float(ions.volume_a3), "stride_ps": stride * grid.frame_ps,
            "label_prefactor_S_cm2_per_mol_per_e2A2_per_ps": molar_conductivity_prefactor(
                grid.temperature_k, n_salt),
            "label": "lambda_i(t0; tau) = n_ions * prefactor * a[o, l, i]; a = q_i dr_i . dM / tau (e^2 A^2/ps)",
            "seed": seed(spec.name, self.system.name, k), "segment": k,
            "command": f"localcond replicas {spec.path.name}", "commit": git_commit(),
            "localcond_version": __version__,
        }
        path = self.dense_path(self.records_dir, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, id=ions.ids, type=ions.types, charge=ions.charges, cell=ions.cell,
                                box_origin=segment.box_origin, pbc=np.array(ions.pbc),
                                metadata=json.dumps(meta), **arrays)
        update_manifest(path.parent, path,
                        {"system": self.system.name, "role": self.system.role, "command": meta["command"],
                         "commit": meta["commit"]}, DENSE_FORMAT)
        self.log(f"  {self.system.name}: dense labels of segment {k}, {len(arrays['time_ps'])} origins "
                 f"({path.stat().st_size / 1e3:.0f} kB)")
        return path

    def summary(self, card_row: dict | None) -> dict:
        """The replica's Λ at the base grid's window for this system and the windows of the rule."""
        segments = [self.segments.load(k) for k in range(self.spec.segments)]
        window = tuple(card_row["tau_window_ps"]) if card_row else None
        full = self.segments.analysis(segments, 1, window)
        rule = self.segments.analysis(segments, 1)
        lam = full["molar_conductivity"]
        row = {"system": self.system.name, "role": self.system.role, "replica_set": self.spec.name,
               "seeds": [seed(self.spec.name, self.system.name, k) for k in range(self.spec.segments)],
               "production_ps": self.spec.segments * self.grid.segment_ps, "tau_window_ps": list(window or []),
               "molar_conductivity": lam, "nernst_einstein": full["nernst_einstein"],
               "species_share_of_conductivity": full["species_share_of_conductivity"],
               "windows": rule.get("windows", []), "dense_record": self.dense_file.name,
               "dense_record_sha256": sha256(self.dense_file), "localcond_version": __version__}
        if card_row:
            card = card_row["molar_conductivity"]
            error = math.hypot(lam["stderr"], card.get("total_error", card["stderr"]))
            row["card"] = {"value": card["value"], "stderr": card["stderr"],
                           "total_error": card.get("total_error"),
                           "species_share_of_conductivity": card_row.get("species_share_of_conductivity")}
            row["z_replica_vs_card"] = (lam["value"] - card["value"]) / error
        return row


def _run_segment(spec_path: str, dirs: tuple[Path, Path, Path], name: str, k: int) -> str:
    spec = load_replica_spec(spec_path)
    grid = load_grid(spec.base_grid)
    system = next(s for s in grid.systems if s.name == name)
    run = ReplicaRun(spec, grid, system, *dirs, log=lambda m: print(m, flush=True))
    if k > 0 and run.segments.done() < k:
        raise LocalcondError(f"{name}: segment {k - 1} is missing")
    run.segments.ensure(k, None)
    return name


def run_replicas(spec_path: str | Path, data_dir: str | Path, table: str | Path, card_table: str | Path,
                 progress_dir: str | Path, records_dir: str | Path, jobs: int = 1,
                 only: list[str] | None = None, log=print) -> list[dict]:
    """Run every missing segment, segment 0 of every system first (it carries the dense
    labels), then segment 1 of every system, …; then write the replica table."""
    spec = load_replica_spec(spec_path)
    grid = load_grid(spec.base_grid)
    dirs = (Path(data_dir).resolve(), Path(progress_dir).resolve(), Path(records_dir).resolve())
    systems = [s for s in grid.systems if not only or s.name in only]
    if only and len(systems) != len(only):
        raise LocalcondError(f"unknown systems {sorted(set(only) - {s.name for s in grid.systems})}")
    started = time.time()
    for k in range(spec.segments):
        _run_phase(spec_path, spec, grid, systems, dirs, k, jobs, started, log)
    return write_table(spec, grid, systems, table, card_table, dirs)


def _run_phase(spec_path: str | Path, spec: ReplicaSpec, grid: GridSpec, systems: list[SystemSpec],
               dirs: tuple[Path, Path, Path], k: int, jobs: int, started: float, log, tries: int = 3) -> None:
    """Segment k of every system that lacks it; failed systems are tried again, up to ``tries`` times."""
    for attempt in range(1, tries + 1):
        todo = [s for s in systems if ReplicaRun(spec, grid, s, *dirs).segments.done() <= k]
        if not todo:
            return
        # held-out first: they carry the most dense origins
        todo.sort(key=lambda s: s.role != "heldout")
        log(f"replicas {spec.name}: segment {k}, try {attempt}: {len(todo)} of {len(systems)} systems to run, "
            f"{jobs} at a time")
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_run_segment, str(spec_path), dirs, s.name, k): s for s in todo}
            for finished, future in enumerate(as_completed(futures), start=1):
                name = futures[future].name
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - one system's failure must not stop the others
                    log(f"[{finished}/{len(todo)}] {name} segment {k} FAILED: {exc}")
                    continue
                log(f"[{finished}/{len(todo)}] {name}: segment {k} done; "
                    f"{(time.time() - started) / 60:.1f} min elapsed")
    failed = [s.name for s in systems if ReplicaRun(spec, grid, s, *dirs).segments.done() <= k]
    if failed:
        raise LocalcondError(f"segment {k} failed {tries} times for {', '.join(failed)}; rerun to retry")


def write_table(spec: ReplicaSpec, grid: GridSpec, systems: list[SystemSpec], table: str | Path,
                card_table: str | Path, dirs: tuple[Path, Path, Path]) -> list[dict]:
    card = {r["system"]: r for r in read_json(Path(card_table), "card table")["systems"]}
    rows = [ReplicaRun(spec, grid, s, *dirs).summary(card.get(s.name)) for s in systems
            if ReplicaRun(spec, grid, s, *dirs).segments.done() >= spec.segments]
    for row in rows:
        if row["system"] in card:
            row["long_lag_check"] = long_lag_check(card[row["system"]], row)
    write_json(Path(table), {"replica_set": spec.name, "command": f"localcond replicas {spec.path.name}",
                             "calibration": error_calibration(rows), "systems": rows})
    return rows


def error_calibration(rows: list[dict]) -> dict:
    """Are the grid's errors right? Each replica is an independent run of its system, so
    z = (Λ_replica − Λ_card) / √(σ_replica² + σ_card,total²) should scatter with unit
    variance: rms z near 1 (within ±√(1/(2n)), its standard error for n systems) and
    about 4.6 % of |z| above 2."""
    z = [r["z_replica_vs_card"] for r in rows if r.get("z_replica_vs_card") is not None]
    if not z:
        return {"n": 0}
    rms = math.sqrt(sum(v * v for v in z) / len(z))
    return {"n": len(z), "rms_z": rms, "rms_z_stderr": math.sqrt(1.0 / (2 * len(z))), "mean_z": sum(z) / len(z),
            "beyond_2_sigma": [r["system"] for r in rows if abs(r.get("z_replica_vs_card") or 0.0) > 2],
            "expected_beyond_2_sigma": 0.0455 * len(z),
            "calibrated": abs(rms - 1.0) <= 2 * math.sqrt(1.0 / (2 * len(z))),
            "definition": "z = (Lambda_replica - Lambda_card) / sqrt(stderr_replica^2 + total_error_card^2) "
                          "at the card's window; calibrated when |rms z - 1| <= 2 sqrt(1/(2n))"}
