"""Size consistency of a model's Λ_pred: a local model must give the same
Λ_pred in a box of 4000 ions as in one of 500 at the same state point.

Runs the training grid's input (lammps_inputs/electrolyte/in.electrolyte) at a
held-out state point with 250 and 2000 ion pairs: minimisation, 100 ps of
equilibration, then 40 ps with fix localcond every 0.2 ps (the README's main
command's protocol), and compares the two runs' Λ_pred (mean over evaluations of
the group mean of λ, blocking error) by z = ΔΛ_pred / √(σ₁² + σ₂²).

    PYTHONPATH=python .venv/bin/python training/size_consistency.py [--model FILE] [--conc 0.6 --eps 14]

Writes training/size_consistency.json (model, state, both runs, z, wall times).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

from localcond.io.lammps_command import lammps_command

ROOT = Path(__file__).resolve().parents[1]


def run(npairs: int, model: str, conc: float, eps: float, workdir: Path) -> dict:
    start = time.time()
    proc = subprocess.run(
        lammps_command(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte", {
            "npairs": npairs, "conc": repr(conc), "eps": repr(eps), "dt": "4.0", "seed": "2718", "equil": "25000",
            "prod": "10000", "model": model, "out": "run"}),
        cwd=workdir, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        raise SystemExit(f"LAMMPS failed ({npairs} pairs):\n{(workdir / 'log.lammps').read_text()[-3000:]}")
    summary = json.loads((workdir / "run.summary.json").read_text())
    pred = summary["lambda_pred"]
    return {"ions": 2 * npairs, "lambda_pred": pred["value"], "stderr": pred["stderr"],
            "evaluations": summary["evaluations"], "wall_s": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the shipped default model)")
    parser.add_argument("--conc", type=float, default=0.6)
    parser.add_argument("--eps", type=float, default=14.0)
    parser.add_argument("--out", default=str(ROOT / "training" / "size_consistency.json"))
    args = parser.parse_args()
    if args.model is None:
        from localcond.model.default import model_path

        args.model = str(model_path())
    runs = []
    for npairs in (250, 2000):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run(npairs, args.model, args.conc, args.eps, Path(tmp)))
        print(f"{runs[-1]['ions']} ions: Lambda_pred = {runs[-1]['lambda_pred']:.1f} +- {runs[-1]['stderr']:.1f} "
              f"({runs[-1]['wall_s']:.0f} s)")
    small, large = runs
    z = (large["lambda_pred"] - small["lambda_pred"]) / math.hypot(small["stderr"], large["stderr"])
    from localcond.model.contract import read_metadata

    md = read_metadata(args.model)
    result = {"command": "PYTHONPATH=python .venv/bin/python training/size_consistency.py",
              "model": Path(args.model).name, "model_description": md.description,
              "model_training_systems": list(md.training_systems),
              "state": {"concentration_mol_per_l": args.conc, "dielectric_constant": args.eps},
              "protocol": "in.electrolyte, dt 4 fs, seed 2718, 100 ps equilibration, 40 ps with fix every 50 steps",
              "runs": runs, "z": z, "consistent_within_2_sigma": abs(z) <= 2.0}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"z = {z:+.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
