"""Checks of a model's per-ion field λ_i against per-ion data of the same kind.

The mean of λ over a system is checked by :mod:`localcond.campaign.learn.evaluate`;
this module checks the field itself, on dense-label records
(:mod:`localcond.campaign.replicas`, format ``localcond-dense-labels/1``):

- **calibration at τ_λ**: the slope-form labels over the window [τ_λ, 2τ_λ],
  λ_i(t0) = N P [q_i Δr_i·ΔM (2τ_λ) − q_i Δr_i·ΔM (τ_λ)] / τ_λ
  (doc/design.md §1.2, §1.6: the estimand of the field), regressed on the model's
  λ_i(t0) over all ions and origins of a system. If λ_i were the expected label
  given the environment, E[label | λ] = λ: slope 1, intercept 0. Least squares of
  label on λ; errors by a block bootstrap over origins (blocks of consecutive
  origins at least 2τ_λ long, resampled with replacement), because labels of
  nearby origins share their displacements. Binned means (``bins`` equal-count
  bins of λ) for the calibration figure.
- **species share**: the first species' share of Λ_pred (Σ over its ions of λ /
  Σ over all ions) beside a measured share of Λ_EH with its error, z.

Units: λ and labels in S cm² mol⁻¹, τ in ps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from localcond.campaign.dataset import DENSE_FORMAT, QUANT
from localcond.engine.neighbors import periodic_edges
from localcond.engine.runtime import LoadedModel
from localcond.errors import LocalcondError

BOOTSTRAP = 1000


@dataclass
class DenseRecord:
    """Ions at dense origins and their per-ion quantities at several lags."""

    path: Path
    metadata: dict
    species_names: list[str]  # per ion, the model species name
    cell: np.ndarray
    box_origin: np.ndarray
    pbc: tuple[bool, bool, bool]
    positions_u16: np.ndarray  # [O, N, 3]
    time_ps: np.ndarray  # [O]
    lags_ps: np.ndarray  # [L]
    a: np.ndarray  # [O, L, N]: q_i Δr_i·ΔM / τ, e² Å² / ps

    def positions(self, origin: int) -> np.ndarray:
        frac = self.positions_u16[origin].astype(np.float64) / QUANT
        return self.box_origin + frac @ self.cell

    def window_labels(self, tau_ps: float) -> np.ndarray:
        """[O, N]: slope-form labels over the window [τ, 2τ] (S cm² mol⁻¹):
        (2τ λ(2τ) − τ λ(τ)) / τ from the plain-form labels at both lags."""
        return 2.0 * self.labels(2.0 * tau_ps) - self.labels(tau_ps)

    def labels(self, tau_ps: float) -> np.ndarray:
        """[O, N]: plain-form labels at lag τ (S cm² mol⁻¹)."""
        matches = np.flatnonzero(np.isclose(self.lags_ps, tau_ps))
        if matches.size == 0:
            raise LocalcondError(f"{self.path}: no labels at {tau_ps:g} ps (lags: "
                                 f"{', '.join(f'{t:g}' for t in self.lags_ps)} ps)")
        meta = self.metadata
        scale = meta["n_ions"] * meta["label_prefactor_S_cm2_per_mol_per_e2A2_per_ps"]
        return scale * self.a[:, int(matches[0]), :].astype(np.float64)


def read_dense(path: str | Path, names_by_type: dict[int, str] | None = None) -> DenseRecord:
    """A dense-label record; ``names_by_type`` maps atom types to model species names
    (default: the model electrolyte's 1 → cation, 2 → anion)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise LocalcondError(f"{path}: not a readable dense-label record ({exc})") from None
    meta = json.loads(str(arrays["metadata"]))
    if meta.get("format") != DENSE_FORMAT:
        raise LocalcondError(f"{path}: format {meta.get('format')!r}, expected {DENSE_FORMAT}")
    names = names_by_type or {1: "cation", 2: "anion"}
    return DenseRecord(path, meta, [names[int(t)] for t in arrays["type"]], arrays["cell"],
                       arrays["box_origin"], tuple(bool(b) for b in arrays["pbc"]), arrays["positions_u16"],
                       arrays["time_ps"], arrays["lags_ps"], arrays["a"])


def read_dense_systems(paths: list[Path] | list[str]) -> list[DenseRecord]:
    """One record per system: the records of one system (a replica set's segments,
    ``<system>.npz``, ``<system>.seg1.npz``, …) joined along the origins, in segment order.
    Their ions, cell and lags must be the same (one run's consecutive segments)."""
    groups: dict[str, list[DenseRecord]] = {}
    for path in paths:
        record = read_dense(path)
        groups.setdefault(record.metadata.get("system", Path(path).stem), []).append(record)
    out = []
    for system, records in groups.items():
        records.sort(key=lambda r: int(r.metadata.get("segment", 0)))
        first = records[0]
        for other in records[1:]:
            if (other.species_names != first.species_names or not np.array_equal(other.cell, first.cell)
                    or not np.array_equal(other.box_origin, first.box_origin)
                    or not np.array_equal(other.lags_ps, first.lags_ps)
                    or other.metadata.get("replica_set") != first.metadata.get("replica_set")):
                raise LocalcondError(f"{other.path} and {first.path}: records of {system} from different runs "
                                     "(ions, box, lags or replica set differ) cannot be joined")
        if len({int(r.metadata.get("segment", 0)) for r in records}) != len(records):
            raise LocalcondError(f"{system}: two records of the same segment ({', '.join(str(r.path) for r in records)})")
        if len(records) == 1:
            out.append(first)
            continue
        meta = {**first.metadata, "segments": [int(r.metadata.get("segment", 0)) for r in records]}
        out.append(DenseRecord(first.path, meta, first.species_names, first.cell, first.box_origin, first.pbc,
                               np.concatenate([r.positions_u16 for r in records]),
                               np.concatenate([r.time_ps for r in records]), first.lags_ps,
                               np.concatenate([r.a for r in records])))
    return out


def field_values(model: LoadedModel, record: DenseRecord) -> np.ndarray:
    """[O, N]: the model's λ_i at every origin (the ensemble mean when it has members)."""
    meta = model.metadata
    unknown = sorted(set(record.species_names) - set(meta.species))
    if unknown:
        raise LocalcondError(f"{record.path}: species {unknown} are not among the model's {list(meta.species)}")
    species = torch.as_tensor([meta.species.index(n) for n in record.species_names], dtype=torch.int64)
    out = []
    with torch.inference_mode():
        for k in range(len(record.time_ps)):
            edge_index, edge_vec = periodic_edges(record.positions(k), record.cell, record.pbc, meta.cutoff)
            values = model.module(species, torch.as_tensor(edge_index),
                                  torch.as_tensor(edge_vec, dtype=model.dtype), int(species.shape[0]))
            out.append(values.double().numpy())
    return np.array(out)


def _fit(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of labels on predictions (NaN when λ does not vary)."""
    x = pred - pred.mean()
    var = float((x * x).sum())
    if not var > 0:
        return float("nan"), float("nan")
    slope = float((x * (labels - labels.mean())).sum() / var)
    return slope, float(labels.mean() - slope * pred.mean())


def calibration(pred: np.ndarray, labels: np.ndarray, stride_ps: float, span_ps: float, bins: int = 8,
                seed: int = 0) -> dict:
    """Labels [O, N] against the model's λ [O, N] at the same ions and origins: slope and
    intercept with block-bootstrap errors, and binned means for a figure. ``span_ps``:
    the longest lag in a label (origins closer than that share displacements)."""
    if pred.shape != labels.shape or pred.ndim != 2:
        raise LocalcondError(f"predictions {pred.shape} and labels {labels.shape} must be equal [origins, ions]")
    n_origins = pred.shape[0]
    block = max(1, math.ceil(span_ps / stride_ps))  # consecutive origins that share displacements
    starts = np.arange(0, n_origins, block)
    slope, intercept = _fit(pred.ravel(), labels.ravel())
    rng = np.random.default_rng(seed)
    draws = []
    if starts.size >= 2:
        for _ in range(BOOTSTRAP):
            chosen = np.concatenate([np.arange(s, min(s + block, n_origins))
                                     for s in rng.choice(starts, size=starts.size)])
            draws.append(_fit(pred[chosen].ravel(), labels[chosen].ravel()))
    spread = np.array(draws).std(axis=0, ddof=1) if len(draws) > 1 else np.full(2, np.nan)
    order = np.argsort(pred.ravel(), kind="stable")
    binned = []
    for part in np.array_split(order, bins):
        if part.size:
            values = labels.ravel()[part]
            binned.append({"lambda_mean": float(pred.ravel()[part].mean()), "label_mean": float(values.mean()),
                           "label_stderr_naive": float(values.std(ddof=1) / math.sqrt(part.size))
                           if part.size > 1 else None, "n": int(part.size)})
    return {"slope": slope, "slope_stderr": float(spread[0]), "intercept": intercept,
            "intercept_stderr": float(spread[1]), "n_origins": int(n_origins),
            "n_ions": int(pred.shape[1]), "bootstrap_block_origins": block, "bins": binned,
            "lambda_std": float(pred.std()), "label_std": float(labels.std()),
            "unit": "S cm^2 mol^-1",
            "definition": "least squares of the per-ion label on the model's lambda at the "
                          "origin, over all ions and origins; errors by block bootstrap over origins"}


def species_share(pred: np.ndarray, first: np.ndarray, measured: dict | None) -> dict:
    """The first species' share of Λ_pred (``first``: [N] bool, its ions) beside a measured
    share of Λ_EH ({"value", "stderr"}), with z when both have errors."""
    total = float(pred.sum())
    share = float(pred[:, first].sum() / total) if total != 0 else float("nan")
    out: dict = {"prediction": share, "measured": measured}
    if measured and measured.get("stderr"):
        out["z"] = (share - measured["value"]) / measured["stderr"]
    return out


def check_field(model_path: str | Path, dense_paths: list[Path], tau_lambda_ps: float,
                measured_shares: dict[str, dict] | None = None, roles: dict[str, str] | None = None) -> list[dict]:
    """Per system (its dense records joined, :func:`read_dense_systems`): the calibration
    of labels against λ_i at τ_λ and the first species' share of Λ_pred beside
    ``measured_shares[system]``."""
    from localcond.engine.runtime import load_model

    model = load_model(model_path)
    rows = []
    for record in read_dense_systems(dense_paths):
        path = record.path
        system = record.metadata.get("system", Path(path).stem)
        pred = field_values(model, record)
        first = np.array([n == model.metadata.species[0] for n in record.species_names])
        rows.append({
            "system": system, "record": str(path), "segments": record.metadata.get("segments", [0]),
            "role": (roles or {}).get(system, record.metadata.get("role")),
            "calibration": {**calibration(pred, record.window_labels(tau_lambda_ps), record.metadata["stride_ps"],
                                          2.0 * tau_lambda_ps),
                            "label_window_ps": [tau_lambda_ps, 2.0 * tau_lambda_ps],
                            "label": "slope form over [tau_lambda, 2 tau_lambda]"},
            "species_share": {"species": model.metadata.species[0],
                              **species_share(pred, first, (measured_shares or {}).get(system))},
        })
    return rows


def calibration_axes(ax, rows: list[dict], title: str = "") -> None:
    """Binned mean label against binned mean λ_i on ``ax``, one curve per system (held-out
    ones marked), with the identity line."""
    values = []
    for row in rows:
        bins = row["calibration"]["bins"]
        x = [b["lambda_mean"] for b in bins]
        y = [b["label_mean"] for b in bins]
        err = [b["label_stderr_naive"] or 0.0 for b in bins]
        held = row.get("role") == "heldout"
        c = row["calibration"]
        ax.errorbar(x, y, yerr=err, fmt="*-" if held else "o-", ms=6 if held else 3, lw=1.2 if held else 0.6,
                    alpha=1.0 if held else 0.4, capsize=2 if held else 0,
                    label=f"{row['system']} (slope {c['slope']:.2f} ± {c['slope_stderr']:.2f})" if held else None)
        values += x + y
    lo, hi = min(values), max(values)
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="label = λ_i")
    ax.set_xlabel("λ_i of the model, binned (S cm²/mol)")
    lo, hi = rows[0]["calibration"]["label_window_ps"]
    ax.set_ylabel(f"mean label, window {lo:g}–{hi:g} ps (S cm²/mol)")
    ax.set_title(title or "per-ion calibration (held-out: stars; training: faint)")
    ax.legend(fontsize=7)


def calibration_plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """:func:`calibration_axes` as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from localcond.io.files import atomic_path

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    calibration_axes(ax, rows, title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def share_figure(rows: list[dict]):
    """The model's first-species share of Λ_pred against the measured share of Λ_EH, one
    point per system with a measured share (held-out ones as labelled stars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    shown = [r for r in rows if r["species_share"].get("measured")]
    for row in shown:
        share = row["species_share"]
        held = row.get("role") == "heldout"
        ax.errorbar(share["measured"]["value"], share["prediction"], xerr=share["measured"].get("stderr") or 0.0,
                    fmt="*" if held else "o", ms=9 if held else 4, alpha=1.0 if held else 0.5, capsize=2,
                    label=f"{row['system']} (z = {share['z']:+.1f})" if held and share.get("z") is not None else None)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="model = measured")
    ax.set_xlabel(f"measured share of Λ_EH ({shown[0]['species_share']['species'] if shown else 'first species'})")
    ax.set_ylabel("the model's share of Λ_pred")
    ax.set_title("species share (held-out: stars; training: faint)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def share_plot(rows: list[dict], path: str | Path) -> Path:
    """:func:`share_figure` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    from localcond.io.files import atomic_path

    fig = share_figure(rows)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
