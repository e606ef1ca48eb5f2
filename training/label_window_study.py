"""Which window [τ, 2τ] should the per-ion field λ_i be defined on?

Two requirements pull apart (doc/design.md §1.6): the labels' mean over ions must
be the system's Λ (transport, not ballistic or caged motion), and the structure at
t0 must still say something about the label (else no local field is testable). For
the slope-form labels over [2, 5], [5, 10] and [10, 20] ps of the dense records
(training/data/implicit-v2-replica/, from `localcond replicas`), per system:

- the labels' mean over ions and origins against the card's Λ (training/systems.json)
  with z over the record's block error (blocks of origins spanning 2τ2, since
  labels of closer origins share displacements) combined with the card's total error;
- a model-free structural signal: the mean label of ions with a counter-ion within
  the contact distance R_PAIR at t0 ("paired") minus that of the others ("free"),
  pooled over the training systems, relative to the pooled Λ, with a block error;
  and the same *within each species* (each frame's species mean removed, so the
  cation/anion split does not enter), pooled over all systems by inverse variance;
- the cations' share of the labels' sum (the species split at this window, to set beside
  the long-time share of Λ_EH), with a block-bootstrap error;
- the power of the per-system calibration test: the slope of the labels on the
  field that has no structure at all, λ_i = 2 t_s Λ (the card's own Λ and
  species share t_s), on every held-out system, with its block-bootstrap error
  (:func:`localcond.campaign.learn.field_check.calibration`).

Run: PYTHONPATH=python .venv/bin/python training/label_window_study.py
(writes training/label_window_study.json, about a minute). On other dense records,
e.g. the held-out set of training/replicas_heldout_dense.json (4 segments of 496 origins
per system, joined):
``… label_window_study.py --records "runs/dense/records/implicit-v2-heldout-dense/*.npz"
--out training/label_window_study_dense.json`` (the pooled training-system numbers are
then absent).
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import numpy as np

from localcond.campaign.learn.field_check import calibration, read_dense_systems
from localcond.engine.neighbors import periodic_edges

ROOT = Path(__file__).resolve().parent
WINDOWS = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0))
R_PAIR = 4.5  # Å: cation σ 3.0 and anion σ 4.5 touch at 3.75 Å; the first minimum of g+- lies beyond


def slope_labels(record, t1: float, t2: float) -> np.ndarray:
    return (t2 * record.labels(t2) - t1 * record.labels(t1)) / (t2 - t1)


def block_means(values: np.ndarray, span_ps: float, stride_ps: float) -> np.ndarray:
    """Per-origin values [O] averaged in consecutive blocks spanning at least span_ps."""
    g = max(1, math.ceil(span_ps / stride_ps))
    k = len(values) // g
    return values[: k * g].reshape(k, g).mean(axis=1)


def paired(record) -> np.ndarray:
    """[O, N] bool: the ion has a counter-ion within R_PAIR at the origin."""
    charge = np.array([1.0 if n == "cation" else -1.0 for n in record.species_names])
    out = np.zeros((len(record.time_ps), len(charge)), dtype=bool)
    for k in range(len(record.time_ps)):
        (i, j), _ = periodic_edges(record.positions(k), record.cell, record.pbc, R_PAIR)
        unlike = charge[i] * charge[j] < 0
        out[k, i[unlike]] = True
    return out


def within_species(labels: np.ndarray, pairs: np.ndarray, cation: np.ndarray) -> float:
    """Paired minus unpaired mean label within each species (each frame's species mean
    removed), averaged over the species that have both kinds."""
    out = []
    for ions in (cation, ~cation):
        y = labels[:, ions] - labels[:, ions].mean(axis=1, keepdims=True)
        p = pairs[:, ions]
        if p.any() and (~p).any():
            out.append(y[p].mean() - y[~p].mean())
    return float(np.mean(out)) if out else float("nan")


def label_share(labels: np.ndarray, cation: np.ndarray) -> float:
    """The cations' share of the labels' sum ([origins, ions] labels, ``cation`` [ions] bool)."""
    return float(labels[:, cation].sum() / labels.sum())


def bootstrap(stat, n_origins: int, block: int, draws: int = 300, seed: int = 0) -> float:
    """Standard deviation of ``stat(origins)`` over resamples of blocks of consecutive origins."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0, n_origins, block)
    values = [stat(np.concatenate([np.arange(s, min(s + block, n_origins)) for s in rng.choice(starts, starts.size)]))
              for _ in range(draws)]
    return float(np.nanstd(values, ddof=1))


def main() -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default=str(ROOT / "data/implicit-v2-replica/*.npz"))
    parser.add_argument("--out", type=Path, default=ROOT / "label_window_study.json")
    args = parser.parse_args()
    card = {r["system"]: r for r in json.loads((ROOT / "systems.json").read_text())["systems"]}
    records = read_dense_systems(sorted(glob.glob(args.records)))  # a system's segments joined
    if not records:
        raise SystemExit(f"no dense records match {args.records}")
    shown = args.records.removeprefix(str(ROOT.parent) + "/")
    out = {"command": " ".join(["PYTHONPATH=python .venv/bin/python training/label_window_study.py", *sys.argv[1:]]),
           "records": shown, "pair_distance_A": R_PAIR, "windows": []}
    pairs = {r.metadata["system"]: paired(r) for r in records}
    for t1, t2 in WINDOWS:
        rows, z, diffs, within = [], [], [], []
        for record in records:
            name = record.metadata["system"]
            labels = slope_labels(record, t1, t2)
            blocks = block_means(labels.mean(axis=1), 2 * t2, record.metadata["stride_ps"])
            err = float(blocks.std(ddof=1) / math.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
            lam = card[name]["molar_conductivity"]
            zs = (float(labels.mean()) - lam["value"]) / math.hypot(err, lam["total_error"])
            p = pairs[name]
            per_origin = np.array([labels[o, p[o]].mean() - labels[o, ~p[o]].mean() if p[o].any() and (~p[o]).any()
                                   else np.nan for o in range(len(labels))])
            cation = np.array([n == "cation" for n in record.species_names])
            block = max(1, math.ceil(t2 / record.metadata["stride_ps"]))
            w = within_species(labels, p, cation) / lam["value"]
            w_err = bootstrap(lambda o: within_species(labels[o], p[o], cation), len(labels), block) / lam["value"]
            within.append((w, w_err))
            label_share_err = bootstrap(lambda o: label_share(labels[o], cation), len(labels), block)
            share = card[name]["species_share_of_conductivity"]["1"]["value"]
            oracle = np.where(cation, 2 * share * lam["value"], 2 * (1 - share) * lam["value"])
            fit = calibration(np.broadcast_to(oracle, labels.shape).copy(), labels, record.metadata["stride_ps"], t2)
            rows.append({"system": name, "role": record.metadata["role"], "label_mean": float(labels.mean()),
                         "label_mean_stderr": err, "card": lam["value"], "card_total_error": lam["total_error"],
                         "z": zs, "paired_fraction": float(p.mean()),
                         "paired_minus_free": float(np.nanmean(per_origin)),
                         "within_species_paired_minus_free_relative": w, "within_species_stderr": w_err,
                         "species_only_field_slope": fit["slope"], "species_only_field_slope_stderr": fit["slope_stderr"],
                         "cation_share_of_labels": label_share(labels, cation),
                         "cation_share_of_labels_stderr": label_share_err})
            z.append(zs)
            if record.metadata["role"] == "train":
                relative = per_origin / lam["value"]
                diffs.append(block_means(relative[np.isfinite(relative)], 2 * t2, record.metadata["stride_ps"]))
        pooled = np.concatenate(diffs) if diffs else None  # training systems only
        values = np.array([v for v, e in within if e > 0])
        weights = np.array([1 / e**2 for v, e in within if e > 0])
        out["windows"].append({
            "window_ps": [t1, t2], "rms_z": float(np.sqrt(np.mean(np.square(z)))), "mean_z": float(np.mean(z)),
            "paired_minus_free_relative_to_lambda": float(pooled.mean()) if pooled is not None else None,
            "paired_minus_free_stderr": (float(pooled.std(ddof=1) / math.sqrt(len(pooled)))
                                         if pooled is not None else None),
            "within_species_paired_minus_free_relative": float((values * weights).sum() / weights.sum()),
            "within_species_stderr": float(1 / math.sqrt(weights.sum())),
            "systems": rows})
        w = out["windows"][-1]
        held = [r for r in rows if r["role"] == "heldout"]
        pooled_text = (f"paired - free {w['paired_minus_free_relative_to_lambda']:+.3f} +- "
                       f"{w['paired_minus_free_stderr']:.3f} of Lambda; " if pooled is not None else "")
        print(f"[{t1:g}, {t2:g}] ps: rms z {w['rms_z']:.2f} (mean {w['mean_z']:+.2f}); {pooled_text}"
              f"within species {w['within_species_paired_minus_free_relative']:+.3f} +- {w['within_species_stderr']:.3f}; "
              "species-only field on held-out: " + ", ".join(
                  f"{r['species_only_field_slope']:.2f} +- {r['species_only_field_slope_stderr']:.2f}" for r in held))
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
