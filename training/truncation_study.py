"""How the truncated labels λ_i^R (ΔM summed over ions within R of i at the origin)
compare with the exact labels, from the committed training records alone:

    .venv/bin/python training/truncation_study.py training/data/implicit-v2/*.npz \
        --out training/truncation_study.json

For each record and each stored radius: mean(λ^R) / mean(λ_exact) over the same
origins and ions (the bias; 1 means unbiased) with a standard error from the
scatter between production segments, and var(λ_exact) / var(λ^R) (the variance
reduction). Labels are in the slope form over the system's window.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from localcond.campaign.dataset import read_record

ROOT = Path(__file__).resolve().parents[1]


def study(path: Path) -> dict:
    record = read_record(path)
    meta = record["metadata"]
    exact = record["label_exact"].astype(np.float64)
    segments = record["segment"]
    rows = []
    for radius in meta["label_radii_A"]:
        values = record[f"label_truncated_R{radius:g}"].astype(np.float64)
        ratios = [values[segments == s].mean() / exact[segments == s].mean() for s in np.unique(segments)]
        rows.append({
            "radius_A": radius,
            "mean_ratio": float(values.mean() / exact.mean()),
            "mean_ratio_stderr": float(np.std(ratios, ddof=1) / np.sqrt(len(ratios))),
            "variance_reduction": float(exact.var() / values.var()),
        })
    return {"system": meta["system"], "segments": int(len(np.unique(segments))),
            "tau_window_ps": meta["tau_window_ps"], "n_labels": int(exact.size), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "truncation_study.json")
    args = parser.parse_args()
    results = [study(r) for r in args.records]
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
