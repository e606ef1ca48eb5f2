"""Is the within-species spread of the shipped field's λ_i the noise of its 30 Å neighbour
means? A diagnosis, not a model: the field fit of a configuration (default
training/configs/default.json) refitted with every ion's neighbour-mean features p̄_i
replaced by their mean over the frame's ions of its species (a box-wide mean: no spatial
noise, the same system means, so the Λ and share rows are unchanged and the labels'
within-frame contrasts see only the ion's own spectrum). Printed and written: the
leave-one-out table, the choice by the fit's own rule, and the held-out checks.

The box-wide mean cannot be exported as a local model (the fix would need a reduction over
all ranks before the readout): it says what the neighbour means cost the field, not what a
shipped model would do.

Run: PYTHONPATH=python .venv/bin/python training/around_noise_study.py [CONFIG [OUT]]
(default training/configs/default.json, training/around_noise_study.json; about 8 min on 2
cores with the configuration's feature cache in place, needs the dense held-out set)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from localcond.campaign.learn.field_fit import FieldFit, SystemRows, describe_check, load_field_config

ROOT = Path(__file__).resolve().parent


def box_mean_design(fit: FieldFit):
    """SystemRows.design with the p̄ columns of each species' rows replaced by their mean over
    that species' ions in the same frame (the raw features averaged, then standardised)."""
    f, block = fit.module.n_features, 1 + fit.module.n_features + fit.module.n_around
    plain = SystemRows.design

    def design(self: SystemRows, origins: slice) -> np.ndarray:
        z = plain(self, origins)
        around = self.raw[origins].astype(np.float64)[:, :, f:]
        for k, (mean, std) in enumerate(self.scale):
            ions = self.species == k
            frame_mean = (around[:, ions].mean(axis=1, keepdims=True) - mean[f:]) / std[f:]
            z[:, ions, k * block + 1 + f:(k + 1) * block] = np.repeat(frame_mean, int(ions.sum()), axis=1)
        return z

    return design


def main() -> None:
    config_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "configs/default.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "around_noise_study.json"
    fit = FieldFit(load_field_config(config_path), log=lambda *_: None)
    SystemRows.design = box_mean_design(fit)
    for name in fit.train:  # the label contrasts with the replaced design; the mean rows are unchanged
        row = fit.rows[name]
        if row.labels is not None:
            fit.blocks[name] = (row.label_blocks(), fit.blocks[name][1])
    best, table = fit.choose()
    for r in table:
        print(f"alpha_around {r['alpha_around']:g} share prior {r['share_prior_width']}: leave-one-out slope "
              f"{r['within_slope']:.2f}, chi2 Lambda {r['chi2_lambda']:.2f}, share {r['chi2_share']:.2f}")
    thetas = fit.members(best["alpha_own"], best["alpha_around"], best["share_prior_width"])
    checks = [fit.check(n, thetas) for n in fit.heldout]
    for c in checks:
        print(describe_check(c))
    out.write_text(json.dumps({
        "what": "the field fit with each ion's neighbour means replaced by the frame's box-wide mean per species "
                "(a diagnosis of the neighbour means' noise; not an exportable model)",
        "command": "PYTHONPATH=python .venv/bin/python training/around_noise_study.py "
                   + str(config_path.resolve().relative_to(ROOT.parent)),
        "penalties": best, "leave_one_out": table, "held_out_checks": checks}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
