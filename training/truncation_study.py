"""How the truncated label λ_i^R (ΔM summed over ions within R of i at t0) compares
with the exact label as R grows, on generated trajectories.

    .venv/bin/python training/truncation_study.py data/implicit-v1/SYSTEM [...] \
        --radii 8 12 16 20 --origin-stride 4 --out training/truncation_study.json

For each system: mean(λ^R) / mean(λ_exact) over the same origins and ions (the
bias; 1 means unbiased) with a standard error from segment-to-segment scatter,
and var(λ_exact) / var(λ^R) (the variance reduction). τ and T from the grid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from localcond.generate import load_grid
from localcond.labels.per_ion import LabelSettings, compute_labels

ROOT = Path(__file__).resolve().parents[1]


def study(system_dir: Path, radii: list[float], stride: int, grid_path: Path) -> dict:
    grid = load_grid(grid_path)
    settings = LabelSettings(timestep_fs=grid.timestep_fs, temperature_k=grid.temperature_k,
                             tau_ps=grid.tau_ps, radii=tuple(radii), origin_stride=stride)
    per_segment = []
    for dump in sorted(system_dir.glob("seg*.dump")):
        _, arrays, _ = compute_labels(dump, settings)
        per_segment.append(arrays)
    exact = np.concatenate([a["exact"].ravel() for a in per_segment])
    rows = []
    for radius in radii:
        key = f"truncated_R{radius:g}"
        values = np.concatenate([a[key].ravel() for a in per_segment])
        ratios = [a[key].mean() / a["exact"].mean() for a in per_segment]
        rows.append({
            "radius_A": radius,
            "mean_ratio": float(values.mean() / exact.mean()),
            "mean_ratio_stderr": float(np.std(ratios, ddof=1) / np.sqrt(len(ratios))),
            "variance_reduction": float(exact.var() / values.var()),
        })
    return {"system": system_dir.name, "segments": len(per_segment), "origin_stride": stride,
            "tau_ps": grid.tau_ps, "n_labels": int(exact.size), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("systems", nargs="+", type=Path)
    parser.add_argument("--radii", type=float, nargs="+", default=[8.0, 12.0, 16.0, 20.0])
    parser.add_argument("--origin-stride", type=int, default=4)
    parser.add_argument("--grid", type=Path, default=ROOT / "training" / "grid.json")
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "truncation_study.json")
    args = parser.parse_args()
    results = [study(s, args.radii, args.origin_stride, args.grid) for s in args.systems]
    tmp = args.out.with_name(args.out.name + ".tmp")
    command = "python training/truncation_study.py " + " ".join(sys.argv[1:])
    tmp.write_text(json.dumps({"command": command, "systems": results}, indent=2) + "\n")
    os.replace(tmp, args.out)
    for r in results:
        for row in r["rows"]:
            print(f"{r['system']} R={row['radius_A']:g} A: mean ratio {row['mean_ratio']:.3f} "
                  f"+- {row['mean_ratio_stderr']:.3f}, variance reduced {row['variance_reduction']:.1f}x")


if __name__ == "__main__":
    main()
