"""Benchmark: peak memory and time of ``localcond reduce`` over many reducer files
(the issue asks for bounded memory with 100 files: files are read one at a time
and only each system's running combination is kept).

    .venv/bin/python bench/reduce_memory.py [--files 100] [--ions 500] [--evaluations 200]

Writes bench/results/reduce_memory.json (machine, commit, peak RSS of the reduce
process for 1 file and for --files files, wall times). The files are synthetic
runs of one system with every statistic on (hist, tcorr 1000, corr, eh 1000).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from fix_overhead import commit, machine  # noqa: E402


def make_file(prefix: Path, ions: int, evaluations: int, seed: int) -> Path:
    from localcond.engine.reducers.reducer_set import ReducerOptions, ReducerSet
    from localcond.engine.reducers.timeline import Evaluation

    rng = np.random.default_rng(seed)
    species = np.arange(ions) % 2
    charges = np.where(species == 0, 1.0, -1.0)
    red = ReducerSet(ReducerOptions.from_dict({"hist": [-20, 20, 100], "tcorr": 1000, "corr": [12, 24],
                                               "eh": [1000, 100, 298.0]}), ["Li", "PF6"], [1.0, -1.0])
    x = rng.normal(size=(ions, 3)) * 20
    for k in range(evaluations):
        x += rng.normal(size=(ions, 3))
        red.observe(Evaluation(10 * k, 0.002, 10, "run"), rng.normal(size=ions), species,
                    np.arange(1, ions + 1), charges, x, rng.random((4, 2, 2, 24)))
    red.write(str(prefix), {"source": "bench", "model_id": "bench"}, {}, "bench")
    return prefix.with_name(prefix.name + ".reduce.npz")


def reduce_peak(files: list[Path], out: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of one `localcond reduce` process."""
    start = time.perf_counter()
    code = ("import resource, sys; from localcond.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "reduce", *map(str, files), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return int(proc.stdout.strip().splitlines()[-1]) / 1024.0, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--ions", type=int, default=500)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reduce_memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = make_file(root / "run000", args.ions, args.evaluations, 0)
        files = [first]
        for k in range(1, args.files):  # copies: the reduction's cost does not depend on the numbers
            copy = root / f"run{k:03d}.reduce.npz"
            copy.write_bytes(first.read_bytes())
            files.append(copy)
        size_mib = first.stat().st_size / 2**20
        one = reduce_peak(files[:1], root / "one")
        many = reduce_peak(files, root / "many")
    report = {"benchmark": "reduce_memory", "commit": commit(), "machine": machine(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python bench/reduce_memory.py " + " ".join(sys.argv[1:]),
              "file_mib": size_mib, "files": args.files, "ions": args.ions, "evaluations": args.evaluations,
              "peak_rss_mib": {"1 file": one[0], f"{args.files} files": many[0]},
              "wall_s": {"1 file": one[1], f"{args.files} files": many[1]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["peak_rss_mib"]), json.dumps(report["wall_s"]), f"file {size_mib:.2f} MiB")


if __name__ == "__main__":
    main()
