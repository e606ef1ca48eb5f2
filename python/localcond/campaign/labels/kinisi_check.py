"""An independent estimate of the Einstein–Helfand conductivity with kinisi
(version 2.1; optional dependency: ``pip install kinisi==2.1.0``).

kinisi multiplies the summed displacement of a selection by a single charge,
so for ions with charges q_j we hand it positions scaled by q_j / q_ref
(q_ref = max |q|; for a 1:1 salt, the anions mirrored, r → −r) and the charge
q_ref: its mean squared charge displacement is then ⟨|ΔM|²⟩. All ions are
selected, so kinisi applies no drift correction. Frame spacings are passed
in whole fs (kinisi truncates dt / time_step to lag indices). kinisi fits
⟨|ΔM|²⟩(τ) for τ ≥ ``start_ps`` with a Bayesian linear model and reports σ;
we convert it to a molar conductivity with the same concentration as ours.
kinisi counts independent samples as if the longest lag given were the
trajectory's length. Our lags end at the fit window, so that count is
corrected (:func:`_count_samples_over_whole_trajectory`). Without the
correction the posterior is about 10× too wide, and its mean is biased high
by the prior's cut at zero slope.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from localcond.errors import LocalcondError
from localcond.campaign.labels.trajectory import ion_frames
from localcond.units import concentration_mol_per_l


# Marks fits made with the corrected sample count (fits without it predate the correction).
SAMPLES_COUNTED_OVER = "whole trajectory"


def kinisi_molar_conductivity(path: str | Path, timestep_fs: float, temperature_k: float,
                              start_ps: float, max_lag_ps: float, n_salt: float | None = None,
                              lag_stride: int = 1, seed: int = 0) -> dict:
    """kinisi's Λ (S cm² mol⁻¹) with its posterior standard deviation, for one dump."""
    try:
        import scipp as sc
        from ase import Atoms
        from kinisi.analyze import ConductivityAnalyzer
    except ImportError:
        raise LocalcondError("kinisi is not installed: pip install kinisi==2.1.0") from None
    positions, times, ions = [], [], None
    for ions, frame in ion_frames(path, timestep_fs):
        positions.append(frame.positions)
        times.append(frame.time_ps)
    assert ions is not None
    pos = np.array(positions)
    q = ions.charges
    q_ref = float(np.abs(q).max())
    scaled = pos * (q / q_ref)[None, :, None]
    spacing_fs = round((times[1] - times[0]) * 1000.0, 9)
    if abs(spacing_fs - round(spacing_fs)) > 1e-9:
        raise LocalcondError(f"kinisi needs a frame spacing of whole fs, got {spacing_fs} fs")
    lags = np.arange(1, len(times), int(lag_stride))
    lags = lags[lags * spacing_fs <= max_lag_ps * 1000.0 + 1e-9]
    frames = [Atoms(["X"] * len(q), positions=x, cell=ions.cell, pbc=True) for x in scaled]
    analyzer = ConductivityAnalyzer.from_ase(
        frames, species_indices=sc.array(dims=["particle"], values=np.arange(len(q))),
        time_step=sc.scalar(spacing_fs, unit="fs"), step_skip=sc.scalar(1, unit="dimensionless"),
        dt=sc.array(dims=["time interval"], values=lags * spacing_fs, unit="fs"),
        ionic_charge=sc.scalar(q_ref, unit="e"), progress=False)
    if not np.array_equal(analyzer.trajectory.dt_index.values, lags):
        raise LocalcondError("kinisi rounded the lag indices differently; frame spacing not exact")
    _count_samples_over_whole_trajectory(analyzer.da, n_intervals=len(times) - 1, last_lag=int(lags[-1]))
    analyzer.conductivity(sc.scalar(start_ps * 1000.0, unit="fs"), sc.scalar(temperature_k, unit="K"),
                          n_samples=1000, n_burn=500, n_walkers=32, n_thin=10, progress=False,
                          random_state=np.random.RandomState(seed))
    sigma = sc.to_unit(analyzer.sigma, "S/m").values  # posterior samples
    n_salt = n_salt or float((q > 0).sum())
    c_mol_per_m3 = concentration_mol_per_l(n_salt, ions.volume_a3) * 1000.0
    lam = sigma / c_mol_per_m3 * 1e4  # S m² mol⁻¹ -> S cm² mol⁻¹
    return {"value": float(lam.mean()), "stderr": float(lam.std(ddof=1)), "unit": "S cm^2 mol^-1",
            "start_ps": start_ps, "max_lag_ps": max_lag_ps, "method": "kinisi 2.1 ConductivityAnalyzer",
            "samples_counted_over": SAMPLES_COUNTED_OVER}


def _count_samples_over_whole_trajectory(da, n_intervals: int, last_lag: int) -> None:
    """Correct kinisi 2.1's count of independent samples for a lag range that stops short
    of the trajectory's end.

    kinisi counts n = particles · dt_index[-1] / di independent samples at lag index di.
    It takes dt_index[-1], the longest lag it was given, to be the trajectory's length,
    which it is for kinisi's default lags. Our lags stop at the fit window's end
    (tens of ps of a 2.5 ns segment), so n is too small by
    n_intervals / last_lag (about 100 at 8–24 ps). Every variance is then that many
    times too large. The GLS slope is unchanged, since the covariance is only
    scaled, but the posterior becomes about 10× too wide. kinisi's prior keeps the
    slope ≥ 0, and a normal cut at zero has a higher mean. On a real segment
    (2 mol/L, ε = 20, 8–24 ps) the posterior mean was 2146 ± 1344 S cm² mol⁻¹,
    against a maximum-likelihood slope of 1735 on kinisi's own mean squared charge
    displacement. The cut normal's mean, μ + σ φ(μ/σ)/Φ(μ/σ), predicts about 2220.
    This puts n and the variances where kinisi's own lag range would have put them:
    n × n_intervals / last_lag, variance ÷ the same."""
    factor = n_intervals / last_lag
    if factor <= 1.0:
        return
    da.coords["n_samples"] = da.coords["n_samples"] * factor
    da.variances = da.variances / factor


def combine_segments(parts: Sequence[dict | None]) -> dict | None:
    """kinisi's fits of consecutive segments combined as a plain mean, with the
    standard error from their scatter (std / √n).

    Not by inverse variance: a fit's posterior error grows with its value, so
    weighting by 1/σ² favours the low fits and pulls the mean down (on one
    held-out system of the first grid: 750 that way against 902 as a plain
    mean of the same fits)."""
    fits = [p for p in parts if p and "value" in p]
    if not fits:
        return None
    values = np.array([p["value"] for p in fits])
    stderr = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else None
    return {**{k: v for k, v in fits[0].items() if k not in ("value", "stderr")},
            "value": float(values.mean()), "stderr": stderr, "n_parts": int(values.size),
            "n_failed": len(parts) - len(fits),
            "combination": "plain mean of per-segment fits; stderr = scatter / sqrt(n)"}
