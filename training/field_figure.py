"""The README's figure for "What λ_i means": labels against λ_i on the dense held-out set,
the previous default model (ridge, system fit) beside the shipped default model (the field
fit on the extended grid), from two ``localcond evaluate … --dense`` results.

Run (after the two evaluations in README "What λ_i means"):
PYTHONPATH=python .venv/bin/python training/field_figure.py runs/eval/default_dense.json runs/train/default/eval.json
(writes doc/figures/field_calibration.png)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from localcond.campaign.learn.field_check import calibration_axes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    previous, shipped = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    calibration_axes(axes[0], previous["field"], "previous default (ridge, system fit): λ_i says nothing")
    calibration_axes(axes[1], shipped["field"], "shipped default (field fit, extended grid)")
    fig.tight_layout()
    out = ROOT / "doc/figures/field_calibration.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
