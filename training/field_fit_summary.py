"""Write training/field_fit_check.json: the field fit's choice and held-out checks, from the
model that ``localcond train training/configs/field.json`` wrote (its metadata hold both),
beside the structure-free field's calibration slopes on the same dense labels
(training/label_window_study_dense.json).

Run: PYTHONPATH=python .venv/bin/python training/field_fit_summary.py [MODEL [OUT]]
(default runs/train/field/model.pt and training/field_fit_check.json; the ion-size variant,
the shipped default model: runs/train/default/model.pt training/field_sizes_check.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from localcond.engine.runtime import load_model

ROOT = Path(__file__).resolve().parent


def relative(value):
    """The configuration with this checkout's absolute paths made relative to the repository."""
    if isinstance(value, dict):
        return {k: relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [relative(v) for v in value]
    if isinstance(value, str):
        return value.replace(str(ROOT.parent) + "/", "")
    return value


def main() -> None:
    model_path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "runs/train/field/model.pt")
    training = load_model(model_path).metadata.training
    study = json.loads((ROOT / "label_window_study_dense.json").read_text())
    window = next(w for w in study["windows"] if w["window_ps"] == training["label_window_ps"])
    free = {r["system"]: {"slope": r["species_only_field_slope"], "stderr": r["species_only_field_slope_stderr"]}
            for r in window["systems"]}
    checks = training["held_out_checks"]
    shipped = relative(training["config"]["out"]) == "runs/train/default"  # scripts/train_default_model.sh's
    out = {
        "what": f"the field fit of {training['command'].split()[-1].replace(str(ROOT.parent) + '/', '')}: "
                "its penalties chosen by leave-one-system-out, "
                "and its held-out checks (issue 24, item 5) on the dense held-out set of "
                "training/replicas_heldout_dense.json; " + ("the shipped default model (scripts/train_default_model.sh)"
                                                            if shipped else "the model itself is not shipped"),
        "command": f"PYTHONPATH=python .venv/bin/python -m {relative(training['command'])} "
                   "(10-25 min on 2 cores, most of it the features of 4 x 1984 dense origins; needs the dense "
                   "held-out set: README 'What lambda_i means'), then this script",
        "config": relative(training["config"]), "penalties": training["penalties"], "leave_one_out": training["leave_one_out"],
        "excluded": training["excluded"],
        "held_out_checks": [{**c, "structure_free_field_slope": free.get(c["system"])} for c in checks],
        "passes_all": all(v is not False for c in checks for v in c["passes"].values()),
        "structure_free_field": "lambda_i = 2 t_s Lambda with the card's own Lambda and share: the field with no "
                                "structure at all, on the same labels (training/label_window_study.py)",
    }
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "field_fit_check.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
