"""The λ part of a reducer summary, shared by the LAMMPS fix and the ASE observer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from localcond.engine.reducers.blocking import BlockingError
from localcond.engine.reducers.moments import RunningMoments


def finite(value: float) -> float | None:
    """JSON has no NaN: an undetermined value is null."""
    return float(value) if np.isfinite(value) else None


def lambda_summary(moments: RunningMoments, series: BlockingError, species: Sequence[str],
                   definition: str) -> dict:
    """Λ_pred (mean of the per-evaluation means, blocking error), overall and per-species
    mean and standard deviation of λ (S cm² mol⁻¹)."""
    n, mean, variance = moments.total()
    return {
        "lambda_pred": {"value": series.mean(), "stderr": finite(series.stderr()),
                        **({"stderr_undetermined": why} if (why := series.why_undetermined()) else {}),
                        "unit": "S cm^2 mol^-1", "definition": definition,
                        "error_method": "blocking, level by Jonsson's M-test (99 %), corrected for the "
                                        "residual lag-1 correlation of the blocks"},
        "lambda_mean_over_all_values": mean, "lambda_std": float(np.sqrt(variance)), "n_values": n,
        "species": {name: {"mean": float(moments.mean[k]), "std": float(np.sqrt(moments.variance()[k])),
                           "count": float(moments.count[k])} for k, name in enumerate(species)},
    }
