"""``localcond generate``: simulate a grid of model electrolytes with LAMMPS and
measure each system's conductivity — resumable, nothing half-written used.

A grid file (JSON, e.g. ``training/grid.json``) fixes the model electrolyte
(``lammps_inputs/electrolyte/in.electrolyte``), the run lengths and the
systems (concentration in mol/L × relative permittivity × replica, training
or held-out). Each system's production is split into segments; segment k
continues from the restart file of segment k−1 and is complete only when its
marker ``segNNN.done`` exists (LAMMPS finished and its outputs were renamed),
so a killed generation reruns at most one segment per system. When all
segments exist, the system is analysed (`localcond conductivity` over the
segments, halves check, temperature check); while the relative error of Λ
is above the grid's target for its role, one more segment is run (up to the
role's maximum production), then ``summary.json`` is written.
Raw trajectories stay in the data directory (not in git); the per-system
table is written to ``training/systems.json`` (committed), and systems
recorded there count as done, so a new machine resumes from the table.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.errors import LocalcondError
from localcond.labels.conductivity import Settings, accumulate, analyse

ROOT = Path(__file__).resolve().parents[2]
COULOMB_BJERRUM_A = 560.6  # e²/(4π ε0 k_B T) in Å at 298 K, divided by ε below


@dataclass(frozen=True)
class SystemSpec:
    name: str
    role: str  # "train" or "heldout"
    conc: float
    eps: float
    replica: int
    seed: int
    production_ps: float


@dataclass(frozen=True)
class GridSpec:
    name: str
    input_file: Path
    npairs: int
    temperature_k: float
    timestep_fs: float
    dump_every: int
    equilibration_ps: float
    segment_ps: float
    tau_ps: float
    blocks_per_segment: int
    systems: tuple[SystemSpec, ...]
    target_relative_error: dict[str, float]
    max_production_ps: dict[str, float]

    def steps(self, ps: float) -> int:
        return int(round(ps * 1000.0 / self.timestep_fs))


def system_name(conc: float, eps: float, replica: int) -> str:
    return f"c{conc:.3f}_e{eps:g}_r{replica}"


def load_grid(path: str | Path) -> GridSpec:
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LocalcondError(f"cannot read grid file {path}: {exc}") from None
    systems = []
    train = spec["train"]
    for replica in range(1, int(train.get("replicas", 1)) + 1):
        for conc in train["concentrations_mol_per_l"]:
            for eps in train["dielectric_constants"]:
                systems.append((conc, eps, replica, "train", train["production_ps"]))
    for item in spec.get("heldout", []):
        systems.append((item["conc"], item["eps"], item.get("replica", 1), "heldout",
                        item["production_ps"]))
    out = []
    for index, (conc, eps, replica, role, production) in enumerate(systems):
        name = system_name(conc, eps, replica)
        seed = 1000 * replica + int(round(conc * 1000)) % 997 + int(round(eps * 10)) % 89 + 1
        out.append(SystemSpec(name, role, float(conc), float(eps), int(replica), seed, float(production)))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise LocalcondError(f"grid {path}: duplicate systems")
    return GridSpec(
        name=spec["name"],
        input_file=(path.parent / spec["input"]).resolve(),
        npairs=int(spec["npairs"]),
        temperature_k=float(spec["temperature_k"]),
        timestep_fs=float(spec["timestep_fs"]),
        dump_every=int(spec["dump_every"]),
        equilibration_ps=float(spec["equilibration_ps"]),
        segment_ps=float(spec["segment_ps"]),
        tau_ps=float(spec["tau_ps"]),
        blocks_per_segment=int(spec.get("blocks_per_segment", 2)),
        systems=tuple(out),
        target_relative_error={k: float(v) for k, v in spec.get("target_relative_error", {}).items()},
        max_production_ps={k: float(v) for k, v in spec.get("max_production_ps", {}).items()},
    )


def _lmp() -> str:
    return str(Path(sys.executable).parent / "lmp")


def _segment_count(grid: GridSpec, system: SystemSpec) -> int:
    return max(2, math.ceil(system.production_ps / grid.segment_ps - 1e-9))


def _segments_done(directory: Path) -> int:
    k = 0
    while (directory / f"seg{k:03d}.done").exists():
        k += 1
    return k


def run_segments(grid: GridSpec, system: SystemSpec, directory: Path, n: int, log=print) -> None:
    """Run the missing segments 0 … n−1 of one system (each resumable on its own)."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        prefix = f"seg{k:03d}"
        done = directory / f"{prefix}.done"
        if done.exists():
            continue
        for leftover in directory.glob(f"{prefix}.*"):
            leftover.unlink()
        for leftover in directory.glob(f"part-{prefix}.*"):
            leftover.unlink()
        restart = "none" if k == 0 else str(directory / f"seg{k - 1:03d}.restart")
        args = [
            _lmp(), "-in", str(grid.input_file), "-log", f"part-{prefix}.log", "-screen", "none",
            "-var", "conc", repr(system.conc), "-var", "eps", repr(system.eps),
            "-var", "npairs", str(grid.npairs), "-var", "seed", str(system.seed + 31 * k),
            "-var", "dt", repr(grid.timestep_fs), "-var", "temp", repr(grid.temperature_k),
            "-var", "equil", str(grid.steps(grid.equilibration_ps) if k == 0 else 0),
            "-var", "prod", str(grid.steps(grid.segment_ps)), "-var", "every", str(grid.dump_every),
            "-var", "out", f"part-{prefix}", "-var", "resume", "0" if k == 0 else "1",
            "-var", "restart", restart,
        ]
        start = time.time()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(args, cwd=directory, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (directory / f"part-{prefix}.log").read_text()[-2000:] if (
                directory / f"part-{prefix}.log").exists() else proc.stdout[-2000:]
            raise LocalcondError(f"{system.name} segment {k}: LAMMPS failed:\n{tail}\n{proc.stderr[-1000:]}")
        for suffix in ("dump", "restart", "temperature", "log"):
            os.replace(directory / f"part-{prefix}.{suffix}", directory / f"{prefix}.{suffix}")
        wall = time.time() - start
        done.write_text(json.dumps({"wall_s": wall, "args": args[1:]}) + "\n")
        log(f"  {system.name}: segment {k + 1}/{n} done in {wall:.0f} s")


def _mean_temperature(directory: Path) -> float:
    values = []
    for path in sorted(directory.glob("seg*.temperature")):
        rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
        values += [float(r[1]) for r in rows if len(r) == 2]
    return float(np.mean(values))


def analyse_system(grid: GridSpec, system: SystemSpec, directory: Path) -> dict:
    n = _segments_done(directory)
    dumps = [directory / f"seg{k:03d}.dump" for k in range(n)]
    settings = Settings(timestep_fs=grid.timestep_fs, temperature_k=grid.temperature_k,
                        tau_ps=grid.tau_ps, max_lag_ps=2 * grid.tau_ps,
                        n_blocks=grid.blocks_per_segment)
    full = analyse(accumulate(dumps, settings), settings)
    halves = [analyse(accumulate(part, settings), settings) for part in (dumps[: n // 2], dumps[n // 2:])]
    (a, ea), (b, eb) = [(h["molar_conductivity"]["value"], h["molar_conductivity"]["stderr"]) for h in halves]
    t_mean = _mean_temperature(directory)
    kinisi = None
    if system.role == "heldout":  # an independent estimator beside ours (issue: data card)
        from localcond.labels.kinisi_check import kinisi_for_replicas

        kinisi = kinisi_for_replicas(dumps, timestep_fs=grid.timestep_fs,
                                     temperature_k=grid.temperature_k, start_ps=grid.tau_ps,
                                     max_lag_ps=3 * grid.tau_ps, lag_stride=2)
    wall = sum(json.loads((directory / f"seg{k:03d}.done").read_text())["wall_s"] for k in range(n))
    return {
        "system": system.name, "role": system.role, "grid": grid.name,
        "concentration_nominal_mol_per_l": system.conc, "dielectric_constant": system.eps,
        "bjerrum_length_A": COULOMB_BJERRUM_A * (298.0 / grid.temperature_k) / system.eps,
        "replica": system.replica, "seed": system.seed, "production_ps": n * grid.segment_ps,
        "molar_conductivity": full["molar_conductivity"], "nernst_einstein": full["nernst_einstein"],
        "ratio": full["ratio"], "relative_error": full["molar_conductivity"]["stderr"] / abs(full["molar_conductivity"]["value"]),
        "tau_ps": full["tau_ps"], "diffusion_coefficients": full["diffusion_coefficients"],
        "species_share_of_conductivity": full["species_share_of_conductivity"],
        "concentration_mol_per_l": full["concentration_mol_per_l"],
        "diffusive_warnings": full["diffusive_check"]["warnings"],
        "halves": {"first": {"value": a, "stderr": ea}, "second": {"value": b, "stderr": eb},
                   "agree_within_2_sigma": bool(abs(a - b) <= 2 * math.hypot(ea, eb))},
        "temperature_mean_k": t_mean,
        "temperature_relative_deviation": t_mean / grid.temperature_k - 1.0,
        "core_seconds": wall, "error_method": full["error_method"], "kinisi": kinisi,
        "localcond_version": __version__,
    }


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _run_one(grid_path: str, data_dir: str, name: str) -> str:
    """Run and analyse one system (in a worker process); returns its summary path."""
    grid = load_grid(grid_path)
    system = next(s for s in grid.systems if s.name == name)
    directory = Path(data_dir) / grid.name / system.name
    summary_path = directory / "summary.json"
    if summary_path.exists():
        return str(summary_path)
    log = lambda m: print(m, flush=True)  # noqa: E731
    n = max(_segment_count(grid, system), _segments_done(directory))
    target = grid.target_relative_error.get(system.role)
    longest = grid.max_production_ps.get(system.role, system.production_ps)
    while True:
        run_segments(grid, system, directory, n, log=log)
        summary = analyse_system(grid, system, directory)
        if target is None or summary["relative_error"] <= target or (n + 1) * grid.segment_ps > longest:
            break
        log(f"  {system.name}: relative error {summary['relative_error']:.1%} > {target:.1%}: "
            f"one more segment")
        n += 1
    _write_json(summary_path, summary)
    return str(summary_path)


def generate(grid_path: str | Path, data_dir: str | Path, table: str | Path,
             only: list[str] | None = None, jobs: int = 1, log=print) -> list[dict]:
    """Run every missing system of the grid (``jobs`` at a time) and update the table."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    grid = load_grid(grid_path)
    data_dir = Path(data_dir).resolve()  # LAMMPS runs inside each system's directory
    root = data_dir / grid.name
    systems = [s for s in grid.systems if not only or s.name in only]
    if only and len(systems) != len(only):
        unknown = sorted(set(only) - {s.name for s in grid.systems})
        raise LocalcondError(f"unknown systems {unknown}; the grid has {[s.name for s in grid.systems]}")
    _write_json(root / "grid.json", {**asdict(grid), "input_file": str(grid.input_file),
                                    "systems": [asdict(s) for s in grid.systems]})
    # Done: analysed here, or recorded in the (committed) table by an earlier session.
    recorded = _recorded(Path(table), grid)
    results = {}
    for s in systems:
        if (root / s.name / "summary.json").exists():
            results[s.name] = json.loads((root / s.name / "summary.json").read_text())
        elif s.name in recorded:
            results[s.name] = recorded[s.name]
    todo = [s for s in systems if s.name not in results]
    log(f"grid {grid.name}: {len(results)} of {len(systems)} systems done, {len(todo)} to run "
        f"({sum(s.production_ps for s in todo) / 1000:g} ns of production), {jobs} at a time")
    _update_table(Path(table), grid, list(results.values()))
    started = time.time()
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_run_one, str(grid_path), str(data_dir), s.name): s for s in todo}
        failed = []
        for finished, future in enumerate(as_completed(futures), start=1):
            system = futures[future]
            try:
                summary = json.loads(Path(future.result()).read_text())
            except LocalcondError as exc:
                failed.append(system.name)
                log(f"[{finished}/{len(todo)}] {system.name} FAILED (rerun to retry it): {exc}")
                continue
            results[system.name] = summary
            _update_table(Path(table), grid, list(results.values()))
            elapsed = time.time() - started
            remaining = len(todo) - finished
            log(f"[{finished}/{len(todo)}] {system.name}: Lambda = "
                f"{summary['molar_conductivity']['value']:.4g} +- {summary['molar_conductivity']['stderr']:.2g} "
                f"S cm^2/mol, ratio {summary['ratio']['value']:.3f}, T {summary['temperature_mean_k']:.2f} K; "
                f"{elapsed / 60:.1f} min elapsed, ~{elapsed / finished * remaining / 60:.0f} min left")
    if failed:
        raise LocalcondError(f"{len(failed)} system(s) failed: {', '.join(failed)}; the others are "
                             "kept, and a rerun retries only what is missing")
    return [results[s.name] for s in systems]


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
    _write_json(table, {"grid": grid.name, "command": "localcond generate training/grid.json",
                        "systems": rows})

