"""Does Λ(τ) still move beyond a system's window? The grid's run and an independent
replica, pooled, tested out to lags of at least 80 ps.

A system's Λ is the slope-form value over its window [t, 2t]
(:mod:`localcond.campaign.labels.windows`). Short windows at high ε were chosen
where the rule's tests had little power, and long runs there showed Λ(τ) still
rising between 10 and 80 ps. This check compares, per system:

- Λ_W: the window's value, the inverse-variance mean of the grid's run and the
  replica at that window (two independent trajectories);
- Λ_long: the inverse-variance mean of the windows [45, 90] and [64, 128] ps of
  both (whichever have an error), which reach lags of 128 ps;

Δ = Λ_long − Λ_W with σ_Δ = √(σ_W² + σ_long²) (treated as independent; the windows
overlap in time, so this overstates σ_Δ and the test is conservative) and
z = Δ / σ_Δ. The long-lag systematic is the part of |Δ| its error does not
explain, √max(0, Δ² − σ_Δ²), the rule the grid's τ-systematic uses for the
next window. The total error that covers both:

    total = √(stderr² + max(τ-systematic, long-lag systematic)²)

(the two systematics measure the same drift of Λ with τ, so the larger one
counts, not their sum). Units: S cm² mol⁻¹, τ in ps.
"""

from __future__ import annotations

import math
from typing import Any

LONG_WINDOWS_PS = (45.0, 64.0)  # lower ends t of the windows [t, 2t] pooled as Λ_long


def pooled(values: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Inverse-variance mean and its error of (value, stderr) pairs with a positive finite error."""
    usable = [(v, e) for v, e in values if e is not None and math.isfinite(e) and e > 0 and math.isfinite(v)]
    if not usable:
        return None
    weight = sum(1.0 / e**2 for _, e in usable)
    return sum(v / e**2 for v, e in usable) / weight, 1.0 / math.sqrt(weight)


def _at(windows: list[dict], t: float) -> tuple[float, float] | None:
    for w in windows:
        if abs(w["tau_window_ps"][0] - t) < 1e-6 and w.get("stderr") is not None:
            return float(w["value"]), float(w["stderr"])
    return None


def long_lag_check(card_row: dict[str, Any], replica_row: dict[str, Any] | None) -> dict[str, Any]:
    """The check of the module docstring for one system: the grid's row (training/systems.json)
    and the replica's (training/replica_systems.json, or None). ``total_error`` is the
    card's error with the long-lag systematic folded in."""
    lam = card_row["molar_conductivity"]
    t = float(card_row["tau_window_ps"][0])
    runs = [card_row.get("windows", [])] + ([replica_row.get("windows", [])] if replica_row else [])
    at_window = [(float(lam["value"]), float(lam["stderr"]))]
    if replica_row and replica_row["molar_conductivity"].get("stderr"):  # the replica at the card's window
        at_window.append((float(replica_row["molar_conductivity"]["value"]),
                          float(replica_row["molar_conductivity"]["stderr"])))
    window = pooled(at_window)
    long = pooled([v for windows in runs for s in LONG_WINDOWS_PS if (v := _at(windows, s)) is not None])
    tau_systematic = float((card_row.get("tau_systematic") or {}).get("value") or 0.0)
    out: dict[str, Any] = {"window_ps": [t, 2 * t], "long_windows_ps": [[s, 2 * s] for s in LONG_WINDOWS_PS],
                           "runs": len(runs), "unit": "S cm^2 mol^-1"}
    if window is None or long is None:
        return {**out, "tested": False, "systematic": 0.0,
                "total_error": float(lam.get("total_error") or lam["stderr"])}
    delta = long[0] - window[0]
    sigma = math.hypot(window[1], long[1])
    systematic = math.sqrt(max(0.0, delta**2 - sigma**2))
    return {**out, "tested": True, "window": {"value": window[0], "stderr": window[1]},
            "long": {"value": long[0], "stderr": long[1]}, "change": delta, "change_stderr": sigma,
            "z": delta / sigma, "systematic": systematic,
            "total_error": math.hypot(float(lam["stderr"]), max(tau_systematic, systematic))}
