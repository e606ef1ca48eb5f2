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
import subprocess
import time
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.campaign.dataset import update_manifest, write_record
from localcond.campaign.grid import COULOMB_BJERRUM_A, GridSpec, SystemSpec, load_grid, seed
from localcond.campaign.labels.trajectory import IonSet
from localcond.campaign.labels.windows import Z_CHECK, critical_z
from localcond.campaign.plan import Planner
from localcond.campaign.segments import Segments
from localcond.errors import LocalcondError
from localcond.io.files import write_json

ROOT = Path(__file__).resolve().parents[3]
SPECIES = ["cation", "anion", "cation"]  # atom types 1, 2 and 3 (a second cation size) of the model electrolyte


def cation_share(row: dict) -> dict | None:
    """The cations' share of Λ_EH, t+ = <ΔM_+ · ΔM> / <|ΔM|²>, from a table row's shares per
    atom type (``species_share_of_conductivity``). The shares of all types sum to 1, so with
    one anion type t+ = 1 − its share, with the same standard error; a mixture's two cation
    types need no covariance. None when the row has no shares."""
    shares = row.get("species_share_of_conductivity") or {}
    anions = [t for t in shares if SPECIES[int(t) - 1] == "anion"]
    if len(anions) != 1:
        return None
    share = shares[anions[0]]
    return {"value": 1.0 - share["value"], "stderr": share["stderr"],
            "definition": "1 - the anions' share of Lambda_EH (t+ for the cations)"}


class SystemRun:
    """One system of a grid: its segments (:class:`~localcond.campaign.segments.Segments`),
    its two-stage plan (:class:`~localcond.campaign.plan.Planner`) and the result of its
    production — Λ with its error budget and checks, and its compact training record."""

    def __init__(self, grid: GridSpec, system: SystemSpec, data_dir: Path, progress_dir: Path,
                 records_dir: Path, log=print) -> None:
        self.grid, self.system, self.log = grid, system, log
        kinisi = system.role == "heldout" or system.eps <= grid.kinisi_max_dielectric
        self.segments = Segments(grid, system, data_dir, progress_dir, kinisi, log)
        self.planner = Planner(self.segments)
        self.progress = self.segments.progress
        self.records = records_dir / grid.name

    def run(self) -> dict:
        plan = self.planner.plan()
        for k in self.planner.production(plan):
            self.segments.ensure(k, plan)
        return self.finish(plan)

    def production_segments(self, plan: dict) -> list[dict]:
        """The stored production segments, each checked against the plan."""
        production = self.planner.production(plan)
        problems = {k: why for k in production if (why := self.segments.mismatch(k, plan))}
        if problems:
            raise LocalcondError(f"{self.system.name}: production segments do not fit the plan: "
                                 + "; ".join(f"segment {k}: {why}" for k, why in problems.items()))
        return [self.segments.load(k) for k in production]

    def diffusive_check(self, check: dict, window: tuple[float, float], n: int) -> tuple[bool, list[str]]:
        """The planned window against every longer one in production data (the window
        rule re-applied), with the warning when it fails."""
        row = next((r for r in check.get("windows", []) if r["tau_window_ps"] == list(window)), None)
        passed = bool(row and row["largest_z_to_longer"] is not None
                      and row["largest_z_to_longer"] <= critical_z(Z_CHECK, n))
        if passed:
            return True, []
        return False, [
            f"diffusive check failed: in production the planned window {window[0]:g}-{window[1]:g} ps "
            f"differs from a longer window by more than "
            f"{critical_z(Z_CHECK, n):.2f} standard errors "
            "(the t-quantile at 2 sigma; largest z "
            f"{row['largest_z_to_longer'] if row else float('nan'):.2f})"]

    def halves(self, segments: list[dict], window: tuple[float, float]) -> dict:
        """Λ of each half of the production; errors from the scatter of all segments (a
        half of two segments would otherwise judge its error from two numbers)."""
        analysis = self.segments.analysis
        half = len(segments) // 2
        per_segment = [analysis([seg], 1, window)["molar_conductivity"]["value"] for seg in segments]
        spread = float(np.std(per_segment, ddof=1))
        (a, ea), (b, eb) = [
            (analysis(part, self.grid.sub_blocks, window)["molar_conductivity"]["value"],
             spread / math.sqrt(len(part))) for part in (segments[:half], segments[half:])]
        return {"first": {"value": a, "stderr": ea}, "second": {"value": b, "stderr": eb},
                "error_method": "segment-to-segment scatter of Lambda / sqrt(segments per half)",
                "agree_within_2_sigma": bool(abs(a - b) <= 2 * math.hypot(ea, eb)),
                "second_minus_first": b - a}

    def finish(self, plan: dict) -> dict:
        """The system's row of the table (and its training record) from its production."""
        grid, system = self.grid, self.system
        n = plan["production_segments"]
        segments = self.production_segments(plan)
        window = tuple(plan["window_ps"])
        per_segment_blocks = grid.sub_blocks  # production: one block per segment
        full = self.segments.analysis(segments, per_segment_blocks, window)
        check = self.segments.analysis(segments, per_segment_blocks)  # the rule on production data
        reference = self.segments.analysis(segments, per_segment_blocks, grid.reference_window_ps)
        passed, failed_check = self.diffusive_check(check, window, n)
        lam = dict(full["molar_conductivity"])
        if "tau_systematic" not in lam:
            raise LocalcondError(f"{system.name}: no longer window to measure the tau-systematic against")
        warnings = list(full["diffusive_check"]["warnings"]) + failed_check
        temperature = float(np.mean([s["meta"]["temperature_mean_k"] for s in segments]))
        kinisi = None
        if self.segments.kinisi:
            from localcond.campaign.labels.kinisi_check import combine_segments

            kinisi = combine_segments([s["meta"]["kinisi"] for s in segments])
        _, record_info = self.write_record(plan, segments, full, lam, passed, warnings)
        last = self.planner.production(plan)[-1]
        wall = sum(self.segments.load(k)["meta"]["wall_s"] for k in range(0, last + 1))
        target_total = grid.target_total_error.get(system.role)
        rel_total = lam["total_error"] / abs(lam["value"])
        return {
            "system": system.name, "role": system.role, "grid": grid.name,
            "concentration_nominal_mol_per_l": system.conc, "dielectric_constant": system.eps,
            "bjerrum_length_A": COULOMB_BJERRUM_A * (298.0 / grid.temperature_k) / system.eps,
            "replica": system.replica,
            "seeds": [seed(grid.name, system.name, k) for k in range(last + 1)],
            "pilot_ps": plan["pilot_segments"] * grid.segment_ps, "production_ps": n * grid.segment_ps,
            "run_length_rule": plan["rule"], "plan": {k: v for k, v in plan.items() if k != "pilot"},
            "pilot": plan["pilot"],
            "molar_conductivity": lam, "nernst_einstein": full["nernst_einstein"],
            "ratio": full["ratio"], "relative_error": lam["stderr"] / abs(lam["value"]),
            "relative_total_error": rel_total,
            "meets_target": bool(target_total is None or rel_total <= target_total),
            "tau_window_ps": list(window), "next_window_ps": full["tau_systematic"]["next_window_ps"],
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
            "halves": self.halves(segments, window),
            "temperature_mean_k": temperature,
            "temperature_relative_deviation": temperature / grid.temperature_k - 1.0,
            "core_seconds": wall, "error_method": full["error_method"], "kinisi": kinisi,
            "record": record_info,
            "localcond_version": __version__,
        }

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
        of_type = [SPECIES[int(t) - 1] for t in ions.species]
        names = list(dict.fromkeys(of_type))  # a mixture's two cation types are one species
        index = np.array([names.index(of_type[k]) for k in ions.species_index()], dtype=np.int64)
        metadata = {
            "grid": grid.name, "system": self.system.name, "role": self.system.role,
            "concentration_mol_per_l": full["concentration_mol_per_l"],
            "dielectric_constant": self.system.eps, "temperature_k": grid.temperature_k,
            "n_salt": full["n_salt"], "tau_window_ps": plan["window_ps"],
            "origin_stride_ps": plan["stride_ps"], "label_radii_A": plan["label_radii_A"],
            "labels": {"form": "slope", "exact": "label_exact",
                       **{f"truncated_R{r:g}": f"label_truncated_R{r:g}" for r in plan["label_radii_A"]}},
            "species_names": names, "species_charges": [float(ions.charges[index == k][0])
                                                        for k in range(len(names))],
            "molar_conductivity": lam, "nernst_einstein": full["nernst_einstein"],
            "diffusive_check_passed": passed, "diffusive_warnings": warnings,
            "command": f"localcond generate {grid.name} (grid file training/{grid.path.name})",
            "commit": git_commit(),
        }
        path = self.records / f"{self.system.name}.npz"
        write_record(path, ions, names, first["box_origin"], arrays, metadata, species_index=index)
        from localcond.campaign.dataset import lambda_of_origins

        same = lambda_of_origins(arrays["collective"], metadata)
        info = {"path": f"{grid.name}/{path.name}", "command": metadata["command"], "commit": metadata["commit"], "n_origins": int(len(arrays["collective"])),
                "stride_ps": plan["stride_ps"], "lambda_same_origins": same,
                "bytes": path.stat().st_size}
        return path, info




def git_commit() -> str | None:
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
        if run.segments.done() < run.planner.production(plan)[-1] + 1:
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
                if not run.planner.replanned():  # else: a second stage interrupted before its row was written
                    run.planner.replan()
                del recorded[s.name]
    results = {s.name: recorded[s.name] for s in systems if s.name in recorded}
    pending = [s for s in systems if s.name not in results]
    started_segments = {s.name: SystemRun(grid, s, *dirs).segments.done() for s in pending}
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
    write_json(table, {"grid": grid.name, "command": f"localcond generate training/{grid.path.name} --jobs 2",
                        "systems": rows})

