"""``localcond generate``: simulate a grid of model electrolytes with LAMMPS and
measure each system's conductivity in its diffusive window — resumable on a
new machine from committed state, with run lengths fixed before looking.

A grid file (JSON, e.g. ``training/grid.json``) fixes the model electrolyte
(``lammps_inputs/electrolyte/in.electrolyte``), the protocol and the systems
(concentration in mol/L × relative permittivity × replica, training or
held-out). Per system:

1. **Pilot** (segment 0: minimisation, equilibration, then one segment of
   ``segment_ps``; extended to 2 and then 4 segments while the window rule
   cannot settle: its window [t, 2t] is settled when the lags up to 8t could
   be tested, i.e. two octaves of longer windows saw no trend, and the test
   could have seen one as large as the statistical target (the relative
   standard error of the difference to each of those windows at most the
   target) — the pilot's blocks are 5 per pilot, so its longest testable lag
   grows with it). Its
   data fix, once and for all, the slope-form window [τ1, τ2] (the rule of
   :mod:`localcond.campaign.labels.windows`) and the production length: the number of segments that
   brings the pilot's relative statistical error of Λ at that window down to
   the role's target, ``ceil(pilot segments · (err_pilot / target)²)``,
   clamped to [``min_production_segments``, role maximum]. Two-stage rule:
   the pilot's data are **not** used in any reported number, so the choice of
   length cannot bias Λ or its error (no optional stopping).
2. **Production** (the n segments after the pilot): each continues from the
   previous one's restart file and is analysed as soon as it finishes:
   displacement statistics over origins inside the segment (in ``sub_blocks``
   blocks, merged into longer blocks as the lags require), and per-ion
   labels at origins every ``stride`` (see :mod:`localcond.campaign.dataset`).
3. **Analysis** of the production segments only: Λ in the slope form at the
   planned window with block errors (one block per segment), the
   τ-systematic (change to the next longer window) and the diffusive check
   (the window rule re-applied to production data: the planned window must
   show no significant trend against longer ones), halves, temperature,
   the slope of ⟨|ΔM|²⟩ over the fixed reference window (100–400 ps) as an
   independent cross-check, kinisi beside held-out and low-ε systems; then
   the compact training record
   ``training/data/<grid>/<system>.npz`` and its manifest line.

State that must survive a new machine lives in the committed progress
directory ``training/progress/<grid>/<system>/``: ``plan.json``, one
``segNNN.npz`` per analysed segment (statistics + labels) and the restart
file of the last one. A segment counts only once its ``.npz`` exists;
trajectories (``data/``) are scratch. Seeds are hashes of grid, system and
segment (:func:`seed`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.campaign.dataset import (
    accumulate_segment,
    label_origins,
    load_segment,
    update_manifest,
    write_record,
)
from localcond.errors import LocalcondError
from localcond.campaign.grid import COULOMB_BJERRUM_A, GridSpec, SystemSpec, load_grid, seed
from localcond.io.files import atomic_path, write_json
from localcond.io.lammps_command import lammps_command
from localcond.campaign.labels.conductivity import Accumulated, Settings, analyse
from localcond.campaign.labels.einstein_helfand import BlockSums, log_spaced_lags
from localcond.campaign.labels.trajectory import IonSet
from localcond.campaign.labels.windows import (
    Z_CHECK,
    candidate_starts,
    critical_z,
    frames_to_ps,
    window_lags,
)

ROOT = Path(__file__).resolve().parents[3]
SPECIES = ["cation", "anion"]  # atom types 1 and 2 of the model electrolyte


def trend_resolution(windows: list[dict], window_ps: list[float], up_to_ps: float) -> float:
    """The largest relative standard error of Λ(window) − Λ(w) over the longer windows
    w = [t', 2t'] with t' ≤ ``up_to_ps`` (independent errors assumed: conservative
    for overlapping windows, whose difference varies less). A trend of this relative
    size would be a 1σ effect; infinite when no longer window was measured."""
    own = next(w for w in windows if list(w["tau_window_ps"]) == list(window_ps))
    worst = math.inf
    for w in windows:
        start = w["tau_window_ps"][0]
        if start <= window_ps[0] or start > up_to_ps + 1e-9:
            continue
        rel = math.hypot(own["stderr"], w["stderr"]) / abs(own["value"])
        worst = rel if worst == math.inf else max(worst, rel)
    return worst


class SystemRun:
    """One system's directories: scratch trajectories and committed progress."""

    def __init__(self, grid: GridSpec, system: SystemSpec, data_dir: Path, progress_dir: Path,
                 records_dir: Path, log=print) -> None:
        self.grid, self.system, self.log = grid, system, log
        self.scratch = data_dir / grid.name / system.name
        self.progress = progress_dir / grid.name / system.name
        self.records = records_dir / grid.name
        reference = tuple(int(round(t / grid.frame_ps)) for t in grid.reference_window_ps)
        # production: one block per segment; a pilot of more segments than sub-blocks reaches further
        longest = grid.longest_lag_ps(max(grid.sub_blocks, grid.max_pilot_segments))
        self.lags = log_spaced_lags(int(longest / grid.frame_ps),
                                    extra=window_lags(grid.frame_ps, longest) + reference)

    @property
    def wants_kinisi(self) -> bool:
        return self.system.role == "heldout" or self.system.eps <= self.grid.kinisi_max_dielectric

    def segment_file(self, k: int) -> Path:
        return self.progress / f"seg{k:03d}.npz"

    def done(self) -> int:
        k = 0
        while self.segment_file(k).exists():
            k += 1
        return k

    # --- one LAMMPS segment -------------------------------------------------
    def run_segment(self, k: int, label_plan: dict | None) -> None:
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
        self._analyse_segment(k, wall, label_plan, new_run=True)
        self.log(f"  {system.name}: segment {k} done ({wall:.0f} s LAMMPS)")

    def _analyse_segment(self, k: int, wall: float, label_plan: dict | None, new_run: bool) -> None:
        """Analyse segment k's trajectory into ``segNNN.npz``; ``new_run``: LAMMPS just made it,
        so its restart replaces any left by an interrupted earlier attempt."""
        grid = self.grid
        dump = self.scratch / f"seg{k:03d}.dump"
        segment = load_segment(dump, grid.timestep_fs)
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
        if self.wants_kinisi and label_plan is not None:
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

    def ensure_segment(self, k: int, label_plan: dict | None) -> None:
        """Segment k analysed as the plan wants it: run it, or redo the analysis of its
        trajectory if it was analysed differently (other lags or blocks, other labels)."""
        if not self.segment_file(k).exists():
            self.run_segment(k, label_plan)
            return
        if not self.mismatch(k, label_plan):
            return
        dump = self.scratch / f"seg{k:03d}.dump"
        if not dump.exists():
            raise LocalcondError(f"{self.system.name}: segment {k} was analysed for another plan and its "
                                 f"trajectory {dump} is gone; remove {self.progress} from segment {k} on "
                                 "to rerun it")
        self._analyse_segment(k, self.load(k)["meta"]["wall_s"], label_plan, new_run=False)
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

    # --- the plan from the pilot -------------------------------------------
    def pilot(self, n: int) -> tuple[dict, bool]:
        """The window rule on pilot segments 0 … n−1 (5 blocks of n sub-blocks each, so
        lags up to n × 125 ps for 2.5 ns segments) and whether its choice is final:
        a passing window [t, 2t] is final when the two octaves above it, up to 8t, were
        tested precisely enough to see a trend as large as the role's statistical target
        (:func:`trend_resolution`), or when the pilot has its maximum length."""
        result = self.analysis([self.load(k) for k in range(n)], merge=n)
        if result.get("window_rule") is None:
            raise LocalcondError(f"{self.system.name}: the pilot supports fewer than two windows")
        longest = self.grid.longest_lag_ps(n)
        t1 = result["tau_window_ps"][0]
        target = self.grid.target_statistical_error[self.system.role]
        settled = (result["window_check_passed"] and 8 * t1 <= longest + 1e-9
                   and trend_resolution(result["windows"], result["tau_window_ps"], 8 * t1) <= target)
        return result, settled or n >= self.grid.max_pilot_segments

    def plan(self) -> dict:
        path = self.progress / "plan.json"
        if path.exists():
            return json.loads(path.read_text())
        grid = self.grid
        n_pilot = 1
        while True:
            for k in range(n_pilot):
                self.ensure_segment(k, None)
            pilot, final = self.pilot(n_pilot)
            if final:
                break
            self.log(f"  {self.system.name}: pilot of {n_pilot} segment(s) cannot settle the window "
                     f"(rule: {pilot['tau_window_ps']} ps, passed {pilot['window_check_passed']}): "
                     f"extending it to {2 * n_pilot}")
            n_pilot = min(2 * n_pilot, grid.max_pilot_segments)
        plan = self._plan_from_pilot(pilot, n_pilot, f"chosen by the window rule on a pilot of {n_pilot} segment(s)")
        write_json(path, plan)
        return plan

    def replanned(self) -> bool:
        """Whether the committed plan is already a second stage (``replan``)."""
        path = self.progress / "plan.json"
        return path.exists() and bool(json.loads(path.read_text()).get("replan_of"))

    def replan(self) -> dict:
        """Second stage, once, for a system whose production failed the diffusive check:
        every segment so far (pilot and failed production) becomes the pilot of a new
        plan (window by the rule, production length from its error, as in the first
        stage), and a fresh production continues the trajectory. The earlier data enter
        no reported number, so the new length cannot bias Λ either."""
        path = self.progress / "plan.json"
        old = json.loads(path.read_text())
        if old.get("replan_of"):
            raise LocalcondError(f"{self.system.name}: replanned once already; not again")
        n_pilot = old["pilot_segments"] + old["production_segments"]
        pilot, _ = self.pilot(n_pilot)
        plan = self._plan_from_pilot(
            pilot, n_pilot, f"replanned after the production failed the diffusive check: the window rule on "
            f"all {n_pilot} earlier segments (pilot and failed production)")
        plan["replan_of"] = {k: v for k, v in old.items() if k != "pilot"}
        plan["rule"] += "; replanned once after a failed diffusive check, all earlier segments as the pilot"
        write_json(path, plan)
        self.log(f"  {self.system.name}: replanned after its failed diffusive check")
        return plan

    def _plan_from_pilot(self, pilot: dict, n_pilot: int, how: str) -> dict:
        grid, role = self.grid, self.system.role
        rows = pilot["windows"]
        # the production (one block per segment) checks a window against longer ones up to its
        # own longest lag: a longer pilot (a replan) may not choose beyond that
        starts = candidate_starts(grid.frame_ps, grid.longest_lag_ps(grid.sub_blocks))
        reachable = pilot["window_check_passed"] and \
            pilot["tau_window_ps"][0] <= frames_to_ps((starts[-2],), grid.frame_ps)[0] + 1e-9
        if reachable:
            window_ps = tuple(pilot["tau_window_ps"])
            row = next(r for r in rows if r["tau_window_ps"] == list(window_ps))
            rel = row["stderr"] / abs(row["value"])
        else:
            # No window passes even on the longest pilot: take the longest production
            # window that still has a longer one to be checked against, and scale the
            # error of the pilot's nearest window (∝ √τ2) to it.
            window_ps = tuple(frames_to_ps((starts[-2], 2 * starts[-2]), grid.frame_ps))
            row = min(rows, key=lambda r: abs(r["tau_window_ps"][0] - window_ps[0]))
            rel = row["stderr"] / abs(row["value"]) * math.sqrt(window_ps[1] / row["tau_window_ps"][1])
            why = "no window passed" if not pilot["window_check_passed"] else \
                f"the rule's window {pilot['tau_window_ps']} ps lies beyond what the production can check"
            how = (f"{how}: {why} (lags up to {grid.longest_lag_ps(n_pilot):g} ps); the longest "
                   "production window with a longer one to check it against")
        window_frames = [int(round(t / grid.frame_ps)) for t in window_ps]
        target = grid.target_statistical_error[role]
        wanted = math.ceil(n_pilot * (rel / target) ** 2)  # error ∝ 1/√length
        longest = int(grid.max_production_ps[role] // grid.segment_ps)
        n = min(max(wanted, grid.min_production_segments), longest)
        production_ps = n * grid.segment_ps
        stride_ps = max(grid.label_min_stride_ps, production_ps / grid.label_max_origins)
        stride_frames = int(math.ceil(stride_ps / grid.frame_ps))
        plan = {
            "system": self.system.name, "role": role,
            "rule": ("two-stage: pilot segments (1, doubled up to "
                     f"{grid.max_pilot_segments} while the window rule cannot settle, i.e. until its window "
                     "[t, 2t] passes against windows up to 8t, each difference resolved to the target; "
                     "not used in any "
                     "reported number) fix the window and the production length "
                     f"ceil(pilot segments x (pilot relative error / {target:g})^2) segments of "
                     f"{grid.segment_ps:g} ps, clamped to [{grid.min_production_segments}, {longest}]"),
            "window_ps": list(window_ps), "window_frames": window_frames, "window_choice": how,
            "pilot_segments": n_pilot,
            "pilot": {"relative_error": rel, "window_passed": bool(reachable),
                      "critical_z": pilot["critical_z"], "longest_lag_ps": grid.longest_lag_ps(n_pilot),
                      "windows": rows},
            "production_segments": n, "wanted_segments": wanted,
            "expected_relative_error": rel * math.sqrt(n_pilot / max(n, 1)),
            "stride_frames": stride_frames, "stride_ps": stride_frames * grid.frame_ps,
            "label_radii_A": list(grid.label_radii_a),
        }
        if wanted > longest:
            plan["warning"] = (f"the pilot asks for {wanted} production segments, more than the "
                               f"{longest} affordable: the statistical target will be missed")
        self.log(f"  {self.system.name}: plan: window {window_ps[0]:g}-{window_ps[1]:g} ps, "
                 f"pilot {n_pilot} segment(s) with error {rel:.1%}, {n} production segments "
                 f"({production_ps / 1000:g} ns)")
        return plan

    def production(self, plan: dict) -> range:
        first = plan["pilot_segments"]
        return range(first, first + plan["production_segments"])

    # --- the whole system ---------------------------------------------------
    def run(self) -> dict:
        plan = self.plan()
        for k in self.production(plan):
            self.ensure_segment(k, plan)
        return self.finish(plan)

    def finish(self, plan: dict) -> dict:
        grid, system = self.grid, self.system
        n = plan["production_segments"]
        problems = {k: self.mismatch(k, plan) for k in self.production(plan)}
        problems = {k: why for k, why in problems.items() if why}
        if problems:
            raise LocalcondError(f"{system.name}: production segments do not fit the plan: "
                                 + "; ".join(f"segment {k}: {why}" for k, why in problems.items()))
        segments = [self.load(k) for k in self.production(plan)]
        window = tuple(plan["window_ps"])
        per_segment_blocks = grid.sub_blocks  # production: one block per segment
        full = self.analysis(segments, per_segment_blocks, window)
        check = self.analysis(segments, per_segment_blocks)  # the rule on production data
        reference = self.analysis(segments, per_segment_blocks, grid.reference_window_ps)
        row = next((r for r in check.get("windows", []) if r["tau_window_ps"] == list(window)), None)
        passed = bool(row and row["largest_z_to_longer"] is not None
                      and row["largest_z_to_longer"] <= critical_z(Z_CHECK, n))
        lam = dict(full["molar_conductivity"])
        stat = lam["stderr"]
        if "tau_systematic" not in lam:
            raise LocalcondError(f"{system.name}: no longer window to measure the tau-systematic against")
        next_window = full["tau_systematic"]["next_window_ps"]
        warnings = list(full["diffusive_check"]["warnings"])
        if not passed:
            warnings.append(
                f"diffusive check failed: in production the planned window {window[0]:g}-{window[1]:g} ps "
                f"differs from a longer window by more than "
                f"{critical_z(Z_CHECK, n):.2f} standard errors "
                "(the t-quantile at 2 sigma; largest z "
                f"{row['largest_z_to_longer'] if row else float('nan'):.2f})")
        # Halves: values from each half, errors from the scatter of all segments (a
        # half of two segments would otherwise judge its error from two numbers).
        half = n // 2
        per_segment = [self.analysis([seg], 1, window)["molar_conductivity"]["value"] for seg in segments]
        spread = float(np.std(per_segment, ddof=1))
        (a, ea), (b, eb) = [
            (self.analysis(part, per_segment_blocks, window)["molar_conductivity"]["value"],
             spread / math.sqrt(len(part))) for part in (segments[:half], segments[half:])]
        temperature = float(np.mean([s["meta"]["temperature_mean_k"] for s in segments]))
        kinisi = None
        if self.wants_kinisi:
            from localcond.campaign.labels.kinisi_check import combine_segments

            kinisi = combine_segments([s["meta"]["kinisi"] for s in segments])
        record_path, record_info = self.write_record(plan, segments, full, lam, passed, warnings)
        last = self.production(plan)[-1]
        wall = sum(self.load(k)["meta"]["wall_s"] for k in range(0, last + 1))
        target_total = grid.target_total_error.get(system.role)
        rel_total = lam["total_error"] / abs(lam["value"])
        summary = {
            "system": system.name, "role": system.role, "grid": grid.name,
            "concentration_nominal_mol_per_l": system.conc, "dielectric_constant": system.eps,
            "bjerrum_length_A": COULOMB_BJERRUM_A * (298.0 / grid.temperature_k) / system.eps,
            "replica": system.replica,
            "seeds": [seed(grid.name, system.name, k) for k in range(last + 1)],
            "pilot_ps": plan["pilot_segments"] * grid.segment_ps, "production_ps": n * grid.segment_ps,
            "run_length_rule": plan["rule"], "plan": {k: v for k, v in plan.items() if k != "pilot"},
            "pilot": plan["pilot"],
            "molar_conductivity": lam, "nernst_einstein": full["nernst_einstein"],
            "ratio": full["ratio"], "relative_error": stat / abs(lam["value"]),
            "relative_total_error": rel_total,
            "meets_target": bool(target_total is None or rel_total <= target_total),
            "tau_window_ps": list(window), "next_window_ps": next_window,
            "tau_systematic": full["tau_systematic"],
            "reference_window": {"tau_window_ps": list(grid.reference_window_ps),
                                 **reference["molar_conductivity"]},
            "diffusion_coefficients": full["diffusion_coefficients"],
            "species_share_of_conductivity": full["species_share_of_conductivity"],
            "concentration_mol_per_l": full["concentration_mol_per_l"],
            "diffusive_check_passed": passed,
            "diffusive_warnings": warnings,
            "windows": check.get("windows", []),
            "curves": {**check["curves"], "logslope_dM2": check["diffusive_check"]["logslope_dM2"],
                       "logslope_msd": check["diffusive_check"]["logslope_msd"]},
            "halves": {"first": {"value": a, "stderr": ea}, "second": {"value": b, "stderr": eb},
                       "error_method": "segment-to-segment scatter of Lambda / sqrt(segments per half)",
                       "agree_within_2_sigma": bool(abs(a - b) <= 2 * math.hypot(ea, eb)),
                       "second_minus_first": b - a},
            "temperature_mean_k": temperature,
            "temperature_relative_deviation": temperature / grid.temperature_k - 1.0,
            "core_seconds": wall, "error_method": full["error_method"], "kinisi": kinisi,
            "record": record_info,
            "localcond_version": __version__,
        }
        return summary

    def write_record(self, plan: dict, segments: list[dict], full: dict, lam: dict, passed: bool,
                     warnings: list[str]) -> tuple[Path, dict]:
        grid = self.grid
        keys = sorted(k for k in segments[0] if k.startswith("labels__"))
        arrays = {k.removeprefix("labels__"): np.concatenate([s[k] for s in segments]) for k in keys}
        arrays["segment"] = np.concatenate([np.full(len(s["labels__collective"]), s["meta"]["segment"])
                                            for s in segments])
        first = segments[0]
        ions = IonSet(first["id"], first["type"], first["charge"], float(first["volume"]),
                      first["cell"], tuple(bool(b) for b in first["pbc"]))
        names = [SPECIES[int(t) - 1] for t in ions.species]
        metadata = {
            "grid": grid.name, "system": self.system.name, "role": self.system.role,
            "concentration_mol_per_l": full["concentration_mol_per_l"],
            "dielectric_constant": self.system.eps, "temperature_k": grid.temperature_k,
            "n_salt": full["n_salt"], "tau_window_ps": plan["window_ps"],
            "origin_stride_ps": plan["stride_ps"], "label_radii_A": plan["label_radii_A"],
            "labels": {"form": "slope", "exact": "label_exact",
                       **{f"truncated_R{r:g}": f"label_truncated_R{r:g}" for r in plan["label_radii_A"]}},
            "species_names": names, "species_charges": [float(ions.charges[ions.types == t][0])
                                                        for t in ions.species],
            "molar_conductivity": lam, "nernst_einstein": full["nernst_einstein"],
            "diffusive_check_passed": passed, "diffusive_warnings": warnings,
            "command": f"localcond generate {grid.name} (grid file training/grid.json)",
            "commit": _git_commit(),
        }
        path = self.records / f"{self.system.name}.npz"
        write_record(path, ions, names, first["box_origin"], arrays, metadata)
        from localcond.campaign.dataset import lambda_of_origins

        same = lambda_of_origins(arrays["collective"], metadata)
        info = {"path": f"{grid.name}/{path.name}", "command": metadata["command"], "commit": metadata["commit"], "n_origins": int(len(arrays["collective"])),
                "stride_ps": plan["stride_ps"], "lambda_same_origins": same,
                "bytes": path.stat().st_size}
        return path, info


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


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _run_one(grid_path: str, dirs: tuple[Path, Path, Path], name: str) -> dict:
    """Run and analyse one system (in a worker process); returns its summary."""
    grid = load_grid(grid_path)
    system = next(s for s in grid.systems if s.name == name)
    log = lambda m: print(m, flush=True)  # noqa: E731
    return SystemRun(grid, system, *dirs, log=log).run()


def reanalyse(grid_path: str | Path, table: str | Path, progress_dir: str | Path,
              records_dir: str | Path, log=print) -> list[dict]:
    """Redo the analysis (table rows and records) of every system whose production is
    complete in the committed progress — no LAMMPS, no trajectories needed."""
    grid = load_grid(grid_path)
    done = []
    for system in grid.systems:
        run = SystemRun(grid, system, Path("unused"), Path(progress_dir).resolve(),
                        Path(records_dir).resolve(), log=log)
        plan_path = run.progress / "plan.json"
        if not plan_path.exists():
            continue
        plan = json.loads(plan_path.read_text())
        if run.done() < run.production(plan)[-1] + 1:
            continue
        summary = run.finish(plan)
        _register_record(Path(records_dir).resolve(), grid, summary)
        _update_table(Path(table), grid, [summary])
        done.append(summary)
        log(f"{system.name}: reanalysed")
    return done


def run_order(grid: GridSpec, todo: list[SystemSpec], started_segments: dict[str, int]) -> list[SystemSpec]:
    """The order systems are handed to the ``jobs`` workers: those with committed
    segments first (they finish soonest and free their progress), then the roles
    with the longest allowed production first (held-out before training: the
    longest-processing-time rule, which shortens the whole grid's wall time on a
    fixed number of workers), grid order within each."""
    index = {s.name: i for i, s in enumerate(grid.systems)}
    return sorted(todo, key=lambda s: (started_segments.get(s.name, 0) == 0,
                                       -grid.max_production_ps[s.role], index[s.name]))


def generate(grid_path: str | Path, data_dir: str | Path, table: str | Path,
             progress_dir: str | Path, records_dir: str | Path, only: list[str] | None = None,
             jobs: int = 1, log=print, replan_failed: bool = False) -> list[dict]:
    """Run every missing system of the grid (``jobs`` at a time) and update the table.

    ``data_dir``: scratch trajectories; ``progress_dir``: committed per-segment state;
    ``records_dir``: committed training records (both get a ``<grid>/`` level)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    grid = load_grid(grid_path)
    # LAMMPS runs inside each system's directory: absolute paths
    dirs = (Path(data_dir).resolve(), Path(progress_dir).resolve(), Path(records_dir).resolve())
    systems = [s for s in grid.systems if not only or s.name in only]
    if only and len(systems) != len(only):
        unknown = sorted(set(only) - {s.name for s in grid.systems})
        raise LocalcondError(f"unknown systems {unknown}; the grid has {[s.name for s in grid.systems]}")
    recorded = _recorded(Path(table), grid)
    if replan_failed:  # a second stage for systems whose production failed the diffusive check
        for s in systems:
            row = recorded.get(s.name)
            if row is not None and not row.get("diffusive_check_passed", True) and \
                    not row.get("plan", {}).get("replan_of"):
                run = SystemRun(grid, s, *dirs, log=log)
                if not run.replanned():  # else: a second stage interrupted before its row was written
                    run.replan()
                del recorded[s.name]
    results = {s.name: recorded[s.name] for s in systems if s.name in recorded}
    pending = [s for s in systems if s.name not in results]
    started_segments = {s.name: SystemRun(grid, s, *dirs).done() for s in pending}
    todo = run_order(grid, pending, started_segments)
    log(f"grid {grid.name}: {len(results)} of {len(systems)} systems done, {len(todo)} to run "
        f"({sum(1 for s in todo if started_segments[s.name])} resuming from committed progress), "
        f"{jobs} at a time")
    started = time.time()
    failed = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_run_one, str(grid_path), dirs, s.name): s for s in todo}
        for finished, future in enumerate(as_completed(futures), start=1):
            system = futures[future]
            try:
                summary = future.result()
            except Exception as exc:  # noqa: BLE001 - one system's failure must not stop the others
                failed.append(system.name)
                what = exc if isinstance(exc, LocalcondError) else f"{type(exc).__name__}: {exc}"
                log(f"[{finished}/{len(todo)}] {system.name} FAILED (rerun to retry it): {what}")
                continue
            _register_record(dirs[2], grid, summary)  # one process writes the manifest
            results[system.name] = summary
            _update_table(Path(table), grid, [summary])
            elapsed = time.time() - started
            lam = summary["molar_conductivity"]
            log(f"[{finished}/{len(todo)}] {system.name}: Lambda = {lam['value']:.4g} +- "
                f"{lam['stderr']:.2g} (stat) +- {lam['tau_systematic']:.2g} (tau) S cm^2/mol at "
                f"{summary['tau_window_ps'][0]:g}-{summary['tau_window_ps'][1]:g} ps, diffusive check "
                f"{'passed' if summary['diffusive_check_passed'] else 'FAILED'}, ratio "
                f"{summary['ratio']['value']:.3f}; {elapsed / 60:.1f} min elapsed")
    if failed:
        raise LocalcondError(f"{len(failed)} system(s) failed: {', '.join(failed)}; the others are "
                             "kept, and a rerun retries only what is missing")
    return [results[s.name] for s in systems]


def _register_record(records_dir: Path, grid: GridSpec, summary: dict) -> None:
    record = summary["record"]
    path = records_dir / record["path"]
    update_manifest(path.parent, path, {"system": summary["system"], "role": summary["role"],
                                        "command": record["command"], "commit": record["commit"]})


def _recorded(table: Path, grid: GridSpec) -> dict[str, dict]:
    if not table.exists():
        return {}
    return {r["system"]: r for r in json.loads(table.read_text()).get("systems", [])
            if r.get("grid") == grid.name}


def _update_table(table: Path, grid: GridSpec, results: list[dict]) -> None:
    by_name = _recorded(table, grid)
    by_name.update({r["system"]: r for r in results})
    order = {s.name: i for i, s in enumerate(grid.systems)}
    rows = sorted(by_name.values(), key=lambda r: order.get(r["system"], 1 << 30))
    write_json(table, {"grid": grid.name, "command": "localcond generate training/grid.json --jobs 2",
                        "systems": rows})

