"""``localcond evaluate MODEL --records … --json OUT``: a model's Λ_pred beside Λ for
every system of a set of training records.

Λ_pred = mean of f over ions and stored frames (S cm² mol⁻¹). Its error: block
bootstrap over production segments (segments resampled with replacement,
2000 draws; frames of a segment move together because their structures are
correlated), combined in quadrature with nothing else; the ensemble spread
(standard deviation of the members' Λ_pred) is reported beside it. z = (Λ_pred
− Λ) / √(σ_pred² + σ_Λ²) with σ_Λ the system's total error. Held-out systems
are split into interpolation (concentration and ε inside the training
ranges) and extrapolation.

For a model with a descriptor domain (ridge models, :mod:`localcond.engine.domain`), each
system's ``domain_distance``: how many training spreads its mean descriptors lie from the
training systems' (beside the model's ``domain_threshold``, above which the fix warns).

Beside the model, a structure-free baseline: a smooth surrogate of Λ over the
state point fitted to the training systems alone — ln Λ quadratic in
x = ln c and y = 1/ε (the Bjerrum length is ∝ 1/ε), weighted least squares
with σ(ln Λ) = σ_Λ / Λ. It needs the state point; the model needs only the
structure. Given the grid files (``--grids``), each system's ions are known: when the
training systems have several cation sizes, a second surrogate adds a quadratic in
the cations' mean size; a held-out system with other masses is a ``control`` (same
structure, other dynamics: a model of structure alone must miss it), and held-out
systems are interpolation only inside the training sizes too. Λ_NE of the same run
(no cross-correlations) is the third baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from localcond import __version__
from localcond.campaign.dataset import positions, read_record
from localcond.errors import LocalcondError
from localcond.io.files import atomic_path
from localcond.engine.neighbors import periodic_edges
from localcond.campaign.grid import GridSpec, ions_description
from localcond.engine.domain import descriptor_features, domain_distance
from localcond.engine.runtime import evaluate_descriptors, load_model

BOOTSTRAP = 2000


def frame_means(model, record: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """[n_members, n_frames]: each member's mean λ over the ions of each stored frame; and,
    for a model with descriptors, the record's mean features X over its frames
    (:func:`localcond.engine.domain.descriptor_features` / number of ions), else None."""
    meta = model.metadata
    names = [str(s) for s in record["species"]]
    unknown = [n for n in names if n not in meta.species]
    if unknown:
        raise LocalcondError(f"species {unknown} are not among the model's {list(meta.species)}")
    species = torch.as_tensor(np.array([meta.species.index(n) for n in names])[record["species_index"]])
    pbc = tuple(bool(b) for b in record["pbc"])
    has_members = hasattr(model.module, "members")
    out = []
    features = []
    with torch.inference_mode():
        for k in range(len(record["collective"])):
            edge_index, edge_vec = periodic_edges(positions(record, k), record["cell"], pbc, meta.cutoff)
            args = (species, torch.as_tensor(edge_index), torch.as_tensor(edge_vec, dtype=model.dtype),
                    int(species.shape[0]))
            values = model.module.members(*args) if has_members else model.module(*args)[None]
            out.append(values.double().mean(dim=1).numpy())
            p = evaluate_descriptors(model, species.numpy(), edge_index, edge_vec, int(species.shape[0]))
            if p is not None:
                features.append(descriptor_features(species.numpy(), p, len(meta.species)) / species.shape[0])
    return np.array(out).T, (np.mean(features, axis=0) if features else None)


def bootstrap_error(values: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """Standard deviation of the mean over block-bootstrap resamples of ``groups``."""
    labels = np.unique(groups)
    if labels.size < 2:
        return float("nan")
    sums = np.array([values[groups == g].sum() for g in labels])
    counts = np.array([(groups == g).sum() for g in labels])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, labels.size, size=(BOOTSTRAP, labels.size))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return float(means.std(ddof=1))


def evaluate(model_path: str | Path, record_paths: list[Path], long_lag_errors: dict[str, float] | None = None,
             grids: list[GridSpec] | None = None) -> dict:
    """Λ_pred of ``model_path`` beside each record's Λ. ``long_lag_errors``: per system, an
    error of Λ that also covers long lags (the replica table's ``long_lag_check.total_error``,
    :mod:`localcond.campaign.long_lag`), used for z in place of the record's. ``grids``: the
    grid files the records came from, whose variants give each system's ions (cation size,
    mixture, mass scale; :mod:`localcond.campaign.grid`) for the size surrogate and the
    classes of held-out systems."""
    model = load_model(model_path)
    trained_on = set(model.metadata.training_systems)
    ions_of = {spec.name: ions_description(spec) for grid in grids or [] for spec in grid.systems}
    rows = []
    for path in record_paths:
        record = read_record(path)
        meta = record["metadata"]
        means, features = frame_means(model, record)
        distance = domain_distance(model.metadata, features) if features is not None else None
        pred = means.mean(axis=0)
        value = float(pred.mean())
        error = bootstrap_error(pred, record["segment"])
        spread = float(means.mean(axis=1).std(ddof=1)) if means.shape[0] > 1 else 0.0
        lam = meta["molar_conductivity"]
        card_err = lam.get("total_error") or lam["stderr"]
        truth_err = (long_lag_errors or {}).get(meta["system"], card_err)
        z = (value - lam["value"]) / float(np.hypot(error if np.isfinite(error) else 0.0, truth_err))
        rows.append({
            "system": meta["system"], "record": str(path),
            "role": _role(meta, trained_on),
            "concentration_mol_per_l": meta.get("concentration_mol_per_l"),
            "dielectric_constant": meta.get("dielectric_constant"),
            "lambda_pred": {"value": value, "stderr": error, "ensemble_spread": spread,
                            "unit": "S cm^2 mol^-1", "n_frames": int(pred.size)},
            "lambda": {"value": lam["value"], "total_error": truth_err, "card_total_error": card_err,
                       "error_covers_long_lags": meta["system"] in (long_lag_errors or {}),
                       "unit": "S cm^2 mol^-1"},
            "relative_error": (value - lam["value"]) / lam["value"], "z": float(z),
            **({"domain_distance": distance} if distance is not None else {}),
            **({"ions": ions_of[meta["system"]]} if meta["system"] in ions_of else {}),
        })
        if "nernst_einstein" in meta:
            ne = float(meta["nernst_einstein"]["value"])
            rows[-1]["nernst_einstein"] = {"value": ne, "relative_error": (ne - lam["value"]) / lam["value"],
                                           "definition": "Lambda_NE of the same run (self-diffusion only)"}
    classify_held_out(rows)
    surrogate(rows)
    size_surrogate(rows)
    return {"model": str(Path(model_path).resolve()), "model_kind": model.metadata.kind,
            "training": {k: model.metadata.training.get(k) for k in ("mode", "label", "tau_windows_ps")},
            **({"domain_threshold": model.metadata.training["domain"]["threshold"]}
               if (model.metadata.training or {}).get("domain") else {}),
            "systems": rows, "summary": _summary(rows), "localcond_version": __version__}


def _state_point(r: dict) -> list[float]:
    """[1, x, y, x², y², xy] with x = ln c, y = 1/ε: ln Λ quadratic in the state point."""
    x, y = np.log(r["concentration_mol_per_l"]), 1.0 / r["dielectric_constant"]
    return [1.0, x, y, x * x, y * y, x * y]


def _fit_log_lambda(rows: list[dict], usable: Callable[[dict], bool], features: Callable[[dict], list[float]],
                    key: str, definition: str) -> None:
    """ln Λ linear in ``features``, weighted least squares with σ(ln Λ) = σ_Λ / Λ over the
    training rows that are ``usable``; its Λ and relative error under ``key`` in every
    usable row."""
    train = [r for r in rows if r["role"] == "train" and usable(r)]
    a = np.array([features(r) for r in train])
    b = np.log([r["lambda"]["value"] for r in train])
    w = np.array([r["lambda"]["value"] / r["lambda"]["total_error"] for r in train])
    coef, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
    for r in filter(usable, rows):
        value = float(np.exp(np.asarray(features(r)) @ coef))
        r[key] = {"value": value, "relative_error": (value - r["lambda"]["value"]) / r["lambda"]["value"],
                  "definition": definition}


def surrogate(rows: list[dict]) -> None:
    """Add ``surrogate`` (Λ of the state-point fit to the training systems) to every row
    whose concentration and ε are known; needs at least 6 training systems."""
    def usable(r: dict) -> bool:
        return bool(r.get("dielectric_constant"))

    if sum(r["role"] == "train" and usable(r) for r in rows) >= 6:
        _fit_log_lambda(rows, usable, _state_point, "surrogate",
                        "ln Lambda quadratic in ln c and 1/eps, fitted to training systems")


def size_surrogate(rows: list[dict]) -> None:
    """Add ``surrogate_size`` to every row with known ions when the training systems have
    more than one cation size: ln Λ quadratic in x = ln c and y = 1/ε, plus a + b σ + c σ²
    in the cations' mean size σ (Å), weighted as :func:`surrogate`. It sees the state point
    and the size; not the structure (a mixture is its mean size) nor the masses."""
    def usable(r: dict) -> bool:
        return bool(r.get("dielectric_constant")) and "ions" in r

    train = [r for r in rows if r["role"] == "train" and usable(r)]
    if len(train) < 9 or len({r["ions"]["sigma_cation_mean"] for r in train}) < 3:
        return
    _fit_log_lambda(rows, usable, lambda r: _state_point(r) + [r["ions"]["sigma_cation_mean"],
                                                               r["ions"]["sigma_cation_mean"] ** 2],
                    "surrogate_size", "ln Lambda quadratic in ln c and 1/eps and in the cations' mean size, "
                                      "fitted to training systems")


def _role(meta: dict, trained_on: set[str]) -> str:
    """'train' (the model saw it), 'heldout' (the record says so), or 'excluded' (a training
    record the model did not use, e.g. one that failed the diffusive check)."""
    if meta["system"] in trained_on:
        return "train"
    return "heldout" if meta.get("role") == "heldout" else "excluded"


def classify_held_out(rows: list[dict]) -> None:
    """Set ``held_out_kind`` on each held-out row: control (other masses), interpolation
    (inside the training rows' c, ε and cation sizes) or extrapolation."""
    train = [r for r in rows if r["role"] == "train"]
    if not train:
        return
    c = [r["concentration_mol_per_l"] for r in train]
    e = [r["dielectric_constant"] for r in train]
    sizes = [r["ions"]["sigma_cation_mean"] for r in train if "ions" in r]
    for r in rows:
        if r["role"] == "heldout" and r["concentration_mol_per_l"] is not None:
            if r.get("ions", {}).get("mass_scale", 1.0) != 1.0:
                r["held_out_kind"] = "control"  # other dynamics: a model of structure must miss it
                continue
            inside = (min(c) <= r["concentration_mol_per_l"] <= max(c)
                      and min(e) <= r["dielectric_constant"] <= max(e)
                      and (not sizes or "ions" not in r
                           or min(sizes) <= r["ions"]["sigma_cation_mean"] <= max(sizes)))
            r["held_out_kind"] = "interpolation" if inside else "extrapolation"


def _summary(rows: list[dict]) -> dict:
    out = {}
    for name, sel in (("train", [r for r in rows if r["role"] == "train"]),
                      ("interpolation", [r for r in rows if r.get("held_out_kind") == "interpolation"]),
                      ("extrapolation", [r for r in rows if r.get("held_out_kind") == "extrapolation"]),
                      ("control", [r for r in rows if r.get("held_out_kind") == "control"])):
        if sel:
            out[name] = {"n": len(sel),
                         "mean_abs_relative_error": float(np.mean([abs(r["relative_error"]) for r in sel])),
                         "within_2_combined_sigma": int(sum(abs(r["z"]) <= 2 for r in sel))}
            for baseline in ("surrogate", "surrogate_size", "nernst_einstein"):
                if all(baseline in r for r in sel):
                    out[name][f"{baseline}_mean_abs_relative_error"] = float(
                        np.mean([abs(r[baseline]["relative_error"]) for r in sel]))
    return out


def parity_plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 5))
    styles = {"train": ("o", "tab:blue"), "interpolation": ("*", "tab:green"),
              "extrapolation": ("s", "tab:red"), "control": ("v", "tab:purple"),
              "not used in training": ("D", "tab:grey")}

    def group(r: dict) -> str:
        if r["role"] == "heldout":
            return r.get("held_out_kind", "not used in training")
        return "train" if r["role"] == "train" else "not used in training"

    for name, (marker, colour) in styles.items():
        sel = [r for r in result["systems"] if group(r) == name]
        if sel:
            ax.errorbar([r["lambda"]["value"] for r in sel], [r["lambda_pred"]["value"] for r in sel],
                        xerr=[r["lambda"]["total_error"] for r in sel],
                        yerr=[np.nan_to_num(r["lambda_pred"]["stderr"]) for r in sel],
                        fmt=marker, color=colour, capsize=2, label=name)
    values = [v for r in result["systems"] for v in (r["lambda"]["value"], r["lambda_pred"]["value"])]
    lo, hi = min(values) * 0.9, max(values) * 1.1
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("Λ Einstein–Helfand (S cm²/mol)")
    ax.set_ylabel("Λ_pred = ⟨f⟩ (S cm²/mol)")
    ax.set_title(result.get("model_kind", ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
