"""The modes × families table of the learned model on the complete grid.

Every configuration named trains on the same committed training set (the
usable training systems of ``training/data/implicit-v2/``; held-out records are
never trained on) and is evaluated by ``localcond evaluate`` on every record:
the training fit, each held-out system (interpolation and extrapolation
apart), and the structure-free surrogate fitted to the same training systems.
Wall time of each training is recorded (this project's 2-core machine).

    PYTHONPATH=python .venv/bin/python training/modes_families.py \
        training/configs/ridge-v2.json training/configs/table-*.json

Models go to each configuration's ``out`` (runs/train/…, not committed; a
rerun resumes from the trainer's checkpoints, so its recorded time is only
the time left); the table is written to
training/modes_families.json. The held-out systems are reported here and
were not used to choose any configuration (that was the leave-one-system-out
cross-validation, ``training/crossval.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from localcond.campaign.learn.evaluate import evaluate
from localcond.campaign.learn.train import record_paths, train

ROOT = Path(__file__).resolve().parents[1]


def describe(config_path: Path) -> dict:
    raw = json.loads(config_path.read_text())
    model = raw["model"]
    readout = "linear" if model.get("hidden") == [] else "MLP"
    family = model["family"] + (f", {readout} readout" if model["family"] == "power-spectrum" else
                                f", {model.get('n_layers', 3)} layers")
    return {"config": str(config_path.relative_to(ROOT)), "family": family, "cutoff": model.get("cutoff"),
            "mode": raw.get("mode", "labels"), "label": raw.get("label", "exact") if raw.get("mode") != "system" else None,
            "solver": raw.get("solver", "adam"), "ensemble": raw.get("ensemble") if raw.get("solver") != "ridge" else "jackknife"}


def held_out_rows(result: dict) -> list[dict]:
    return [{"system": r["system"], "kind": r.get("held_out_kind"), "lambda": r["lambda"]["value"],
             "lambda_error": r["lambda"]["total_error"], "lambda_pred": r["lambda_pred"]["value"],
             "lambda_pred_error": r["lambda_pred"]["stderr"], "relative_error": r["relative_error"], "z": r["z"],
             "surrogate_relative_error": r.get("surrogate", {}).get("relative_error")}
            for r in result["systems"] if r["role"] == "heldout"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=ROOT / "training/modes_families.json")
    args = parser.parse_args()
    entries = []
    for config_path in (p.resolve() for p in args.configs):
        entry = describe(config_path)
        print(f"[table] {entry['config']}: {entry['family']}, {entry['mode']}", flush=True)
        start = time.perf_counter()
        model = train(config_path, log=lambda *a: None)
        seconds = time.perf_counter() - start
        records = record_paths([str(config_path.parent / r) for r in json.loads(config_path.read_text())["records"]])
        result = evaluate(model, records)
        entry.update(train_wall_seconds=seconds, summary=result["summary"], held_out=held_out_rows(result))
        entries.append(entry)
        s = result["summary"]
        print(f"[table]   train {100 * s['train']['mean_abs_relative_error']:.1f} %; interpolation "
              f"{100 * s['interpolation']['mean_abs_relative_error']:.1f} % "
              f"({s['interpolation']['within_2_combined_sigma']}/{s['interpolation']['n']} within 2 sigma); "
              f"extrapolation {100 * s['extrapolation']['mean_abs_relative_error']:.1f} %; "
              f"{seconds / 60:.1f} min", flush=True)
        out = {"command": "PYTHONPATH=python .venv/bin/python training/modes_families.py "
                          + " ".join(e["config"] for e in entries), "entries": entries}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
