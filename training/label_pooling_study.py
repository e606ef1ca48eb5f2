"""Why per-ion labels alone compress Λ across the grid: a closed-form check.

Least squares of the exact per-ion labels λ_i(t0; τ) on the power-spectrum
descriptors (cutoff 8 Å, n_max = l_max = 4, per central species, plus an
intercept, ridge 1e-3 on standardised features), pooled over the records of
implicit-v2 whose Λ passed the diffusive check, then the mean fitted value per system beside the mean label.
Repeated with 1/ε (a global parameter of the force field, not part of any
ion's structure) appended to the features. Writes JSON beside this file.

    PYTHONPATH=python .venv/bin/python training/label_pooling_study.py
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import torch

from localcond.campaign.dataset import read_record, unusable_for_training
from localcond.campaign.learn.data import load_system
from localcond.model.power_spectrum import make_power_spectrum_model

HERE = Path(__file__).resolve().parent
SPECIES = ["cation", "anion"]


def fit_means(x: np.ndarray, y: np.ndarray, central: np.ndarray, system: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-species ridge fit; returns the mean fitted value per system and R²."""
    fitted = np.zeros_like(y)
    for s in np.unique(central):
        rows = central == s
        a = x[rows]
        mean, std = a.mean(axis=0), a.std(axis=0)
        std[std == 0] = 1.0
        a = np.c_[(a - mean) / std, np.ones(rows.sum())]
        w = np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1]), a.T @ y[rows])
        fitted[rows] = a @ w
    means = np.array([fitted[system == k].mean() for k in range(system.max() + 1)])
    return means, float(1.0 - ((y - fitted) ** 2).mean() / y.var())


def main() -> None:
    torch.set_num_threads(2)
    model, _ = make_power_spectrum_model(SPECIES, [1.0, -1.0], cutoff=8.0)
    # as the trainer: records whose Λ must not be learned from are not used
    files = [f for f in sorted(glob.glob(str(HERE / "data" / "implicit-v2" / "*.npz")))
             if unusable_for_training(read_record(f)["metadata"]) is None]
    x, y, system, central, inv_eps, names, label_means, lams = [], [], [], [], [], [], [], []
    for k, path in enumerate(files):
        data = load_system(path, SPECIES, 8.0)
        eps = float(data.metadata["dielectric_constant"])
        for frame in data.frames:
            with torch.no_grad():
                d = model.descriptors(frame.species, frame.edge_index, frame.edge_vec, int(frame.species.shape[0]))
            x.append(d.double().numpy())
            y.append(frame.labels["exact"].double().numpy())
            central.append(frame.species.numpy())
            system.append(np.full(d.shape[0], k))
            inv_eps.append(np.full(d.shape[0], 1.0 / eps))
        names.append(data.name)
        lams.append(data.lam)
    x, y, system, central, inv_eps = map(np.concatenate, (x, y, system, central, inv_eps))
    label_means = [float(y[system == k].mean()) for k in range(len(files))]
    structure, r2 = fit_means(x, y, central, system)
    with_eps, r2_eps = fit_means(np.c_[x, inv_eps], y, central, system)
    rows = [{"system": n, "label_mean": m, "lambda": lam, "fit_structure": float(a), "fit_structure_and_inv_eps": float(b)}
            for n, m, lam, a, b in zip(names, label_means, lams, structure, with_eps)]
    out = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "labels": "exact", "records": len(files),
           "ions_times_origins": int(y.size), "r2_structure": r2, "r2_structure_and_inv_eps": r2_eps, "systems": rows}
    (HERE / "label_pooling_study.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'system':15s} {'label mean':>10s} {'structure':>10s} {'+ 1/eps':>10s}")
    for r in rows:
        print(f"{r['system']:15s} {r['label_mean']:10.0f} {r['fit_structure']:10.0f} {r['fit_structure_and_inv_eps']:10.0f}")
    print(f"R2 {r2:.4f} (structure), {r2_eps:.4f} (+ 1/eps)")


if __name__ == "__main__":
    main()
