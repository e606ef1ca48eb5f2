"""Leave-one-system-out cross-validation of a training configuration.

For every training system that the trainer would use (role ``train``, Λ passed
the diffusive check), train the configuration on the others and predict the
left-out one with ``localcond evaluate``; beside it the structure-free
surrogate fitted to the same other systems. This is the measurement to choose
a model's settings by (cutoff, depth, mode) without touching the held-out
systems, which are kept for the final report.

    PYTHONPATH=python .venv/bin/python training/crossval.py training/configs/pilot-system.json

Folds go to runs/crossval/NAME/SYSTEM/ (a rerun reuses a finished fold whose
configuration and training systems are unchanged); the
table is written to training/configs/NAME.crossval.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from localcond.campaign.dataset import read_record, unusable_for_training
from localcond.campaign.learn.evaluate import evaluate
from localcond.campaign.learn.train import record_paths, train

ROOT = Path(__file__).resolve().parents[1]


def usable(path: Path) -> bool:
    meta = read_record(path)["metadata"]
    return meta.get("role", "train") == "train" and unusable_for_training(meta) is None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    args = parser.parse_args()
    base = json.loads(args.config.read_text())
    name = args.config.stem
    records = [p.resolve() for p in record_paths([str((args.config.parent / r)) for r in base["records"]])]
    systems = [p for p in records if usable(p)]
    if len(systems) < 7:
        raise SystemExit(f"{len(systems)} usable training systems: too few to leave one out and fit the surrogate")
    rows = []
    for left_out in systems:
        fold = ROOT / "runs" / "crossval" / name / left_out.stem
        model = fold / "model.pt"
        config = dict(base, records=[str(p) for p in systems if p != left_out], out=str(fold))
        stored = fold / "config.json"
        if not (model.exists() and stored.exists() and json.loads(stored.read_text()) == config):
            if fold.exists():
                shutil.rmtree(fold)  # another configuration or other training systems: start afresh
            fold.mkdir(parents=True)
            stored.write_text(json.dumps(config, indent=1) + "\n")
            train(stored, log=lambda *a: None)
        result = evaluate(model, systems)
        (row,) = [r for r in result["systems"] if Path(r["record"]).resolve() == left_out]
        rows.append({"system": row["system"], "lambda": row["lambda"], "lambda_pred": row["lambda_pred"],
                     "relative_error": row["relative_error"], "z": row["z"],
                     "surrogate_relative_error": row["surrogate"]["relative_error"]})
        print(f"{row['system']:15s} Lambda {row['lambda']['value']:8.1f} +- {row['lambda']['total_error']:6.1f}  "
              f"pred {row['lambda_pred']['value']:8.1f} ({100 * row['relative_error']:+6.1f} %, z {row['z']:+5.1f})  "
              f"surrogate {100 * row['surrogate']['relative_error']:+6.1f} %", flush=True)
    summary = {"folds": len(rows),
               "mean_abs_relative_error": float(np.mean([abs(r["relative_error"]) for r in rows])),
               "surrogate_mean_abs_relative_error": float(np.mean([abs(r["surrogate_relative_error"]) for r in rows])),
               "within_2_combined_sigma": int(sum(abs(r["z"]) <= 2 for r in rows))}
    out = {"config": str(args.config), "command": f"PYTHONPATH=python .venv/bin/python training/crossval.py {args.config}",
           "what": "leave-one-system-out: trained on the other usable training systems, "
                   "the left-out one predicted; surrogate fitted to the same others",
           "summary": summary, "folds": rows}
    target = args.config.with_name(f"{name}.crossval.json")
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary), f"\nwrote {target}")


if __name__ == "__main__":
    main()
