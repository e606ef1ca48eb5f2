"""Figures of ``localcond reduce``, drawn from the summary's numbers only (so a
figure shows exactly what summary.json holds). Each function returns a
matplotlib Figure; :func:`write_figures` saves them as PNG.

Units on the axes: λ and Λ in S cm² mol⁻¹, distances in Å, times in ps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LAMBDA = "S cm$^2$ mol$^{-1}$"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _array(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _finish(fig, ax, what: str, summary: dict[str, Any]):
    """Title (what, and the system), legend, layout."""
    ax.set_title(f"{what}\n{summary['system']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def lambda_distribution(summary: dict[str, Any]):
    """Probability density of λ, one curve per species."""
    plt = _pyplot()
    data = summary["curves"]["lambda_distribution"]
    edges = np.asarray(data["edges"])
    centers = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, density in data["density"].items():
        ax.plot(centers, _array(density), drawstyle="steps-mid", label=name)
    ax.set_xlabel(f"local molar conductivity λ ({LAMBDA})")
    ax.set_ylabel(f"probability density (1 / ({LAMBDA}))")
    return _finish(fig, ax, "distribution of λ", summary)


def spatial_correlation(summary: dict[str, Any]):
    """Covariance of λ fluctuations of pairs at distance r, like and unlike charges
    (a band of ± one standard error from the scatter between files, when there are several)."""
    plt = _pyplot()
    data = summary["curves"]["spatial_correlation"]
    r = np.asarray(data["r_A"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in ("like", "unlike"):
        line, = ax.plot(r, _array(data[name]), marker="o", ms=3, label=f"{name} charges")
        err = data.get(f"{name}_stderr")
        if err is not None:  # the scatter between files
            y, e = _array(data[name]), _array(err)
            ax.fill_between(r, y - e, y + e, color=line.get_color(), alpha=0.25, lw=0)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("distance r (Å)")
    ax.set_ylabel(f"covariance of λ ({LAMBDA})$^2$")
    return _finish(fig, ax, "spatial correlation of λ", summary)


def time_autocorrelation(summary: dict[str, Any]):
    """Normalised autocorrelation of each ion's λ, one curve per species."""
    plt = _pyplot()
    tc = summary["time_correlation"]
    in_ps = tc["tau_ps"] is not None
    x = np.asarray(tc["tau_ps"] if in_ps else tc["lags"], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in tc["normalized"].items():
        ax.plot(x[1:], _array(values)[1:], marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("lag τ (ps)" if in_ps else "lag (evaluations)")
    ax.set_ylabel("C(τ) / C(0) (dimensionless)")
    return _finish(fig, ax, "time autocorrelation of λ", summary)


def einstein_helfand(summary: dict[str, Any]):
    """Λ_EH(τ) ± error, Λ_NE(τ), and the log-slope of ⟨|ΔM|²⟩ (1 where diffusive)."""
    plt = _pyplot()
    eh = summary["einstein_helfand"]
    tau, lam, err = _array(eh["tau_ps"]), _array(eh["molar_conductivity"]), _array(eh["stderr"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5), sharex=True)
    top.errorbar(tau, lam, yerr=err, marker="o", ms=3, capsize=2, label="Λ$_{EH}$")
    top.plot(tau, _array(eh["nernst_einstein"]), ls="--", label="Λ$_{NE}$")
    pred = summary["lambda_pred"]["value"]
    top.axhline(pred, color="C3", lw=1, label="Λ$_{pred}$")
    window = eh.get("diffusive_window")
    if window is not None and window["passed"]:  # the window the summary reports as the run's Λ_EH
        lo, hi = window["tau_window_ps"]
        for ax in (top, bottom):
            ax.axvspan(lo, hi, color="C2", alpha=0.12, lw=0)
        top.errorbar([np.sqrt(lo * hi)], [window["value"]], yerr=[window["stderr"] or 0.0], color="C2", marker="s",
                     ms=5, capsize=3, label=f"Λ$_{{EH}}$, window {lo:g}–{hi:g} ps")
    top.set_ylabel(f"Λ ({LAMBDA})")
    top.set_xscale("log")
    top.legend()
    top.set_title(f"Einstein–Helfand conductivity\n{summary['system']}", fontsize=9)
    slope = eh["log_slope"]
    bottom.plot(_array(slope["tau_ps"]), _array(slope["value"]), marker="o", ms=3, label="log-slope")
    bottom.axhline(1.0, color="0.6", lw=0.8)
    bottom.set_xlabel("lag τ (ps)")
    bottom.set_ylabel("d ln⟨|ΔM|²⟩ / d ln τ (dimensionless)")
    fig.tight_layout()
    return fig


def convergence(summary: dict[str, Any], reference: dict[str, Any] | None = None):
    """Running Λ_pred and Λ_EH with their 1σ bands against the evaluations counted, one
    curve per file: how far from converged each number is. Λ_EH is taken at the
    longest lag whose error is determined (the fix's f_ID[6]); a ``reference``
    (value, stderr) the user trusts is drawn on both panels."""
    plt = _pyplot()
    traces = summary["curves"]["convergence"]
    with_eh = any(v is not None for t in traces for v in t["lambda_eh"])
    fig, axes = plt.subplots(2 if with_eh else 1, 1, figsize=(5, 5 if with_eh else 3.2), sharex=True,
                             squeeze=False)
    panels = [(axes[0, 0], "lambda_pred")] + ([(axes[1, 0], "lambda_eh")] if with_eh else [])
    for t in traces:
        label = Path(t["file"]).name
        x = np.asarray(t["evaluations"], dtype=float)
        for ax, name in panels:
            y, err = _array(t[name]), _array(t[f"{name}_stderr"])
            (line,) = ax.plot(x, y, marker="o", ms=2, label=label)
            ax.fill_between(x, y - err, y + err, color=line.get_color(), alpha=0.25, lw=0)
    for ax, _ in panels:
        if reference is not None:
            ax.axhline(reference["value"], color="k", lw=0.9, ls="--", label="reference")
            if reference.get("stderr"):
                ax.axhspan(reference["value"] - reference["stderr"], reference["value"] + reference["stderr"],
                           color="k", alpha=0.1, lw=0)
    axes[0, 0].set_ylabel(f"running Λ$_{{pred}}$ ({LAMBDA})")
    axes[0, 0].set_title(f"convergence with run length (bands: 1σ)\n{summary['system']}", fontsize=9)
    if with_eh:
        axes[1, 0].set_ylabel(f"Λ$_{{EH}}$, longest lag\nwith an error ({LAMBDA})")
    axes[-1, 0].set_xlabel("evaluations counted")
    axes[-1, 0].set_xscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pred_versus_eh(summaries: list[dict[str, Any]]):
    """Λ_pred against Λ_EH from the diffusive window, one point per system with one."""
    plt = _pyplot()
    rows = [s for s in summaries if (s.get("lambda_eh") or {}).get("value") is not None]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    x = np.array([s["lambda_eh"]["value"] for s in rows])
    xe = _array([s["lambda_eh"]["stderr"] for s in rows])
    y = np.array([s["lambda_pred"]["value"] for s in rows])
    ye = _array([s["lambda_pred"]["stderr"] for s in rows])
    ax.errorbar(x, y, xerr=xe, yerr=ye, ls="none", marker="o", capsize=2, label="systems")
    if rows:
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, label="Λ$_{pred}$ = Λ$_{EH}$")
    ax.set_xlabel(f"Λ$_{{EH}}$, diffusive window ({LAMBDA})")
    ax.set_ylabel(f"Λ$_{{pred}}$ ({LAMBDA})")
    ax.set_title("predicted against Einstein–Helfand", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def write_figures(summaries: list[dict[str, Any]], out_dir: str | Path,
                  reference: dict[str, Any] | None = None) -> list[Path]:
    """Every figure the summaries support, as PNG files in ``out_dir`` (``reference``: a
    value the user trusts, for the convergence figures)."""
    from localcond.io.files import atomic_path

    out_dir = Path(out_dir)
    plt = _pyplot()
    written = []

    def save(fig, name: str) -> None:
        path = out_dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        written.append(path)

    for s in summaries:
        if "lambda_distribution" in s["curves"]:
            save(lambda_distribution(s), f"{s['system']}.lambda_distribution.png")
        if "spatial_correlation" in s["curves"]:
            save(spatial_correlation(s), f"{s['system']}.spatial_correlation.png")
        if "time_correlation" in s:
            save(time_autocorrelation(s), f"{s['system']}.time_autocorrelation.png")
        if "einstein_helfand" in s:
            save(einstein_helfand(s), f"{s['system']}.einstein_helfand.png")
        if any(t["evaluations"] for t in s["curves"].get("convergence", [])):
            save(convergence(s, reference), f"{s['system']}.convergence.png")
    if any((s.get("lambda_eh") or {}).get("value") is not None for s in summaries):
        save(pred_versus_eh(summaries), "lambda_pred_versus_lambda_eh.png")
    return written
