"""Is a run inside what the model was trained on? A first, output-side check.

A trained model's metadata list its training systems' Λ (``training.ensemble_spread``,
one entry per system with its ``lambda``, S cm² mol⁻¹). A run whose Λ_pred lies far
outside that range — below half the smallest or above twice the largest, or not
positive when every training Λ is — is almost certainly outside the model's domain (on the model electrolyte,
6 mol/L gives Λ_pred = −12 400 with the default model). The fix and the ASE observer
say so once, after WARN_AFTER evaluations. It says nothing about runs inside the range:
a descriptor-space domain is the open issue "Beyond the state point".
"""

from __future__ import annotations

import math

from localcond.model.contract import ModelMetadata

WARN_AFTER = 10  # evaluations before the first look: a few, so that one odd frame does not decide
FACTOR = 2.0  # "far outside": below min / FACTOR or above max × FACTOR


def training_range(metadata: ModelMetadata) -> tuple[float, float] | None:
    """(smallest, largest) Λ of the training systems, S cm² mol⁻¹; None when the metadata
    do not list them (untrained or test models, models trained before the field existed)."""
    if not metadata.trained or metadata.purpose != "conductivity":
        return None
    spread = (metadata.training or {}).get("ensemble_spread") or {}
    values = [float(v["lambda"]) for v in spread.values() if isinstance(v, dict) and "lambda" in v]
    values = [v for v in values if math.isfinite(v)]
    return (min(values), max(values)) if values else None


def outside_note(metadata: ModelMetadata, lambda_pred: float) -> str | None:
    """A warning when ``lambda_pred`` lies far outside the training systems' Λ (module
    docstring); None when it does not or when the range is unknown."""
    known = training_range(metadata)
    if known is None or not math.isfinite(lambda_pred):
        return None
    lo, hi = known
    if lo / FACTOR <= lambda_pred <= hi * FACTOR and (lambda_pred > 0 or lo <= 0):
        return None
    return (f"WARNING: Lambda_pred = {lambda_pred:.4g} S cm^2/mol after {WARN_AFTER} evaluations lies far outside "
            f"the Lambda of the model's {len((metadata.training or {}).get('ensemble_spread', {}))} training systems "
            f"({lo:.4g} to {hi:.4g}): this system is probably outside what the model was trained on, and its "
            "numbers mean little")
