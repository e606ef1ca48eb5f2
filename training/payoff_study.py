"""The payoff: Λ_pred from 40 ps of MD against Λ from the grid's multi-ns trajectories.

For every held-out system of the grid, one fresh LAMMPS run of the grid's own
model electrolyte (``lammps_inputs/electrolyte``, new seed, 100 ps of
equilibration) followed by 40 ps with ``fix localcond`` and the model (an
evaluation every 0.2 ps), then, from that short run alone:

- Λ_pred = mean of λ over ions and evaluations, with the fix's blocking error;
- Λ_NE and Λ_EH at the longest lag the fix's live Einstein–Helfand supports
  (what a user gets without the model, from the same dynamics);

beside the grid's long-run Λ (training/systems.json: its production length,
window and total error). The simulation factor is production length / 40 ps,
counted only where |Λ_pred − Λ| lies within the long run's total error (the
same accuracy from that much less simulation). All Λ in S cm² mol⁻¹.

    PYTHONPATH=python .venv/bin/python training/payoff_study.py [--model FILE.pt]

About 1 min of one core per system; runs in runs/payoff/, result in
training/payoff_study.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from localcond.model.default import model_path as default_model_path
from localcond.io.lammps_command import lammps_command

ROOT = Path(__file__).resolve().parents[1]
SHORT_PS = 40.0
TIMESTEP_FS = 4.0
EQUIL_PS = 100.0
SEED0 = 4100  # not a seed of the grid (its seeds are hashes, 9 digits)


def run_system(model: Path, row: dict, seed: int, directory: Path) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    steps = lambda ps: str(int(round(ps * 1000.0 / TIMESTEP_FS)))  # noqa: E731
    command = lammps_command(ROOT / "lammps_inputs/electrolyte/in.electrolyte", {
        "conc": row["concentration_nominal_mol_per_l"], "eps": row["dielectric_constant"], "dt": TIMESTEP_FS,
        "seed": seed, "equil": steps(EQUIL_PS), "prod": steps(SHORT_PS), "model": model, "out": "short"})
    start = time.perf_counter()
    subprocess.run(command, cwd=directory, check=True)
    seconds = time.perf_counter() - start
    summary = json.loads((directory / "short.summary.json").read_text())
    pred, eh = summary["lambda_pred"], summary["einstein_helfand"]
    ok = [k for k, e in enumerate(eh["stderr"]) if e is not None]
    k = ok[-1]
    lam = row["molar_conductivity"]
    error = pred["value"] - lam["value"]
    within = abs(error) <= lam["total_error"]
    return {
        "system": row["system"], "seed": seed, "wall_seconds": seconds, "evaluations": summary["evaluations"],
        "short_ps": SHORT_PS,
        "lambda_pred": {"value": pred["value"], "stderr": pred["stderr"]},
        "lambda_eh_short": {"value": eh["molar_conductivity"][k], "stderr": eh["stderr"][k], "tau_ps": eh["tau_ps"][k]},
        "lambda_ne_short": {"value": eh["nernst_einstein"][k], "tau_ps": eh["tau_ps"][k]},
        "lambda_long": {"value": lam["value"], "total_error": lam["total_error"],
                        "production_ps": row["production_ps"], "tau_window_ps": row["tau_window_ps"]},
        "relative_error_pred": error / lam["value"],
        "relative_error_ne": (eh["nernst_einstein"][k] - lam["value"]) / lam["value"],
        "within_long_run_error": bool(within),
        "simulation_factor": row["production_ps"] / SHORT_PS if within else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the shipped default model)")
    parser.add_argument("--table", type=Path, default=ROOT / "training/systems.json")
    parser.add_argument("--out", type=Path, default=ROOT / "training/payoff_study.json")
    args = parser.parse_args()
    model = (args.model or default_model_path()).resolve()
    rows = [r for r in json.loads(args.table.read_text())["systems"] if r["role"] == "heldout"]
    results = []
    for k, row in enumerate(rows):
        result = run_system(model, row, SEED0 + k, ROOT / "runs/payoff" / row["system"])
        results.append(result)
        p, lo, ne = result["lambda_pred"], result["lambda_long"], result["lambda_ne_short"]
        print(f"{row['system']}: 40 ps Lambda_pred {p['value']:.1f} +- {p['stderr']:.1f}, Lambda_NE {ne['value']:.1f}; "
              f"long run {lo['value']:.1f} +- {lo['total_error']:.1f} ({lo['production_ps'] / 1000:g} ns); "
              f"within its error: {result['within_long_run_error']}", flush=True)
    factors = [r["simulation_factor"] for r in results if r["simulation_factor"]]
    out = {"command": "PYTHONPATH=python .venv/bin/python training/payoff_study.py", "model": model.name,
           "systems": results,
           "summary": {"n": len(results), "within_long_run_error": len(factors),
                       "simulation_factor_min": min(factors) if factors else None,
                       "mean_abs_relative_error_pred": sum(abs(r["relative_error_pred"]) for r in results) / len(results),
                       "mean_abs_relative_error_ne": sum(abs(r["relative_error_ne"]) for r in results) / len(results)}}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
