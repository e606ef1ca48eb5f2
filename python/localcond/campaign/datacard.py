"""``localcond data-card``: the data card of a generated grid (ground truth v2).

Markdown (protocol, checks computed from the table's rows, one line per system
with Λ ± statistical ± τ-systematic error, kinisi beside ours, model
caveats) and two figures: Λ and Λ/Λ_NE over the grid, and one panel per
system with Λ(τ) and the chosen window. Units throughout: concentration
mol/L, Λ S cm²/mol, lags and windows ps, lengths Å, diffusion cm²/s.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import constants

from localcond.campaign.generate import ROOT, cation_share
from localcond.campaign.grid import COULOMB_BJERRUM_A, GridSpec, ions_description, load_grid
from localcond.campaign.labels.kinisi_check import SAMPLES_COUNTED_OVER
from localcond.campaign.labels.windows import BLOCKS_PER_LAG, Z_CHECK, Z_TREND, critical_z
from localcond.io.files import atomic_path, write_text

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TEMPERATURE_DEVIATION = 0.01
LOW_EPSILON = 14.0  # "low-ε" systems: strong pairing (l_B / contact distance ≥ 10)
# lammps_inputs/electrolyte/in.electrolyte
LANGEVIN_DAMP_FS = 500.0
ION_MASSES_G_PER_MOL = {"cation": 20.0, "anion": 60.0}
CONTACT_DISTANCE_A = 3.75  # cation–anion σ of the WCA cores
# figures
OVERVIEW_INCHES = (10.0, 4.0)
OVERVIEW_DPI = 120
PANEL_INCHES = (3.0, 2.3)  # one panel of the window figure (width, height)
LEGEND_INCHES = 0.5  # strip above the panels for the shared legend
MIN_PANEL_COLUMNS = 3
WINDOW_DPI = 80
SLOPE_AXIS_MAX = 2.5  # log-slope axis: 2 ballistic, 1 diffusive
COLOURS = {"ratio": "tab:blue", "windows": "tab:green", "final": "tab:orange", "slope": "0.35",
           "chosen": "0.88"}


# --- numbers ----------------------------------------------------------------
def free_diffusion_cm2_per_s(temperature_k: float, damp_fs: float, mass_g_per_mol: float) -> float:
    """D0 = k_B T · damp / m (cm²/s) of a lone ion under LAMMPS' Langevin friction −(m/damp) v."""
    mass_kg = mass_g_per_mol * 1e-3 / constants.N_A
    return constants.k * temperature_k * damp_fs * 1e-15 / mass_kg * 1e4


def limiting_molar_conductivity(temperature_k: float, d_sum_cm2_per_s: float) -> float:
    """Λ0 = F² (D+ + D−) / (R T) (S cm²/mol) of a 1:1 salt of free ions."""
    faraday = constants.e * constants.N_A
    return faraday ** 2 / (constants.R * temperature_k) * d_sum_cm2_per_s


def kinisi_z(ours: float, ours_error: float, kinisi: float, kinisi_error: float | None) -> float | None:
    """(kinisi − ours) / √(σ_ours² + σ_kinisi²); None without a kinisi error."""
    if kinisi_error is None or not math.isfinite(kinisi_error):
        return None
    return (kinisi - ours) / math.hypot(ours_error, kinisi_error)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _pm(value: float, *errors: float | None) -> str:
    """``value ± e1 ± e2 …`` with as many decimals as show e1 to two significant digits."""
    first = errors[0] if errors else None
    if not _finite(first) or first <= 0:
        return f"{value:.4g}" + "".join(f" ± {e:.2g}" if _finite(e) else " ± n/a" for e in errors)
    places = max(0, 1 - math.floor(math.log10(first)))
    return " ± ".join(f"{x:.{places}f}" if _finite(x) else "n/a" for x in (value, *errors))


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _clamped(row: dict) -> bool:
    plan = row["plan"]
    return plan["wanted_segments"] > plan["production_segments"]


# --- Markdown -----------------------------------------------------------------
def checks(grid: GridSpec, rows: list[dict]) -> list[str]:
    """One line per requirement, computed from the rows."""
    by_name = {r["system"]: r for r in rows}
    pending = [s.name for s in grid.systems if s.name not in by_name]
    lines = [f"{len(grid.systems) - len(pending)} of {len(grid.systems)} systems done"
             + (f"; pending: {', '.join(pending)}" if pending else "")]
    for role in ("train", "heldout"):
        done = [by_name[s.name] for s in grid.systems if s.role == role and s.name in by_name]
        planned = sum(s.role == role for s in grid.systems)
        target = grid.target_total_error.get(role)
        met = (f"{sum(r['relative_total_error'] <= target for r in done)} of {len(done)} meet the "
               f"total-error target (relative total error ≤ {_percent(target)})"
               if target is not None else "no total-error target")
        lines.append(f"{role}: {len(done)} of {planned} done; {met}")
    if not rows:
        return lines
    n = len(rows)
    failed = [r["system"] for r in rows if not r["diffusive_check_passed"]]
    lines.append(f"diffusive check passed: {n - len(failed)} of {n}"
                 + (f"; FAILED (marked, must not be used): {', '.join(failed)}" if failed else ""))
    agree = sum(r["halves"]["agree_within_2_sigma"] for r in rows)
    positive = sum(r["halves"]["second_minus_first"] > 0 for r in rows)
    lines.append(f"first and second halves of production agree within 2σ: {agree} of {n}; "
                 f"second − first: {positive} of {n} positive (no drift: {n / 2:g} ± {math.sqrt(n) / 2:.1f})")
    lines.append(reference_line(grid, rows))
    lines.append(reference_line(grid, rows, low_epsilon=False))
    warm = sum(abs(r["temperature_relative_deviation"]) <= MAX_TEMPERATURE_DEVIATION for r in rows)
    lines.append(f"mean temperature within {_percent(MAX_TEMPERATURE_DEVIATION)} of "
                 f"{grid.temperature_k:g} K: {warm} of {n}")
    clamped = [r["system"] for r in rows if _clamped(r)]
    lines.append(f"production clamped at the role's maximum (pilot asked for more): {len(clamped)} of {n}"
                 + (f" ({', '.join(clamped)})" if clamped else ""))
    lams = [r["molar_conductivity"]["value"] for r in rows]
    ratios = [r["ratio"]["value"] for r in rows]
    lines.append(f"Λ spans {min(lams):.4g} to {max(lams):.4g} S cm²/mol (×{max(lams) / min(lams):.1f}); "
                 f"Λ/Λ_NE spans {min(ratios):.3f} to {max(ratios):.3f}")
    hours = sum(r["core_seconds"] for r in rows) / 3600
    lines.append(f"cost: {hours:.2f} core-hours of LAMMPS (pilots included)")
    megabytes = sum(r["record"]["bytes"] for r in rows) / 1e6
    origins = sum(r["record"]["n_origins"] for r in rows)
    lines.append(f"training records: {megabytes:.2f} MB in {n} files, {origins} label origins")
    return lines


def reference_line(grid: GridSpec, rows: list[dict], low_epsilon: bool = True) -> str:
    """Λ at each system's window against the slope over the fixed reference window
    (100–400 ps): for the low-ε systems, where pairing makes the window matter, or
    (``low_epsilon`` False) for the others, where the window rule may choose a few ps."""
    chosen = [r for r in rows if (r["dielectric_constant"] <= LOW_EPSILON) == low_epsilon
              and r.get("reference_window")]
    t1, t2 = grid.reference_window_ps
    which = f"ε ≤ {LOW_EPSILON:g}" if low_epsilon else f"ε > {LOW_EPSILON:g}"
    if not chosen:
        return f"Λ at the chosen window against the slope over {t1:g}–{t2:g} ps ({which}): no system yet"
    zs = [reference_z(r) for r in chosen]
    listed = ", ".join(f"{r['system']} {z:+.1f}" for r, z in zip(chosen, zs))
    return (f"Λ at the chosen window against the slope over {t1:g}–{t2:g} ps ({which}): within "
            f"2 combined σ for {sum(abs(z) <= 2 for z in zs)} of {len(chosen)} (z: {listed})")


def reference_z(row: dict) -> float:
    """(Λ − Λ_ref) / √(σ_total² + σ_ref²)."""
    lam, ref = row["molar_conductivity"], row["reference_window"]
    return (lam["value"] - ref["value"]) / math.hypot(lam["total_error"], ref["stderr"])


def _input_name(path: Path) -> str:
    for base in (Path.cwd(), ROOT):
        try:
            return str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def protocol(grid: GridSpec) -> list[str]:
    """The model and the measurement protocol, from the grid file."""
    longest_segments = {role: int(ps // grid.segment_ps) for role, ps in grid.max_production_ps.items()}
    targets = "; ".join(
        f"{role}: statistical {_percent(grid.target_statistical_error[role])}, total "
        f"{_percent(grid.target_total_error[role]) if role in grid.target_total_error else 'none'}, "
        f"production ≤ {grid.max_production_ps[role] / 1000:g} ns"
        for role in grid.target_statistical_error)
    clamps = ", ".join(f"{role} ≤ {k}" for role, k in longest_segments.items())
    variants = []
    for system in (s for s in grid.systems if s.ions):
        ions = ions_description(system)
        size = (f"cations σ {ions['sigma_cation']:g} Å and, {_percent(ions['fraction2'])} of them, "
                f"{ions['sigma_cation2']:g} Å (one species in the record)" if ions["fraction2"] > 0
                else f"cation σ {ions['sigma_cation']:g} Å")
        variants.append(f"{system.name}: {size}" + (f", every mass × {ions['mass_scale']:g}"
                                                   if ions["mass_scale"] != 1.0 else ""))
    return [
        f"- Model (`{_input_name(grid.input_file)}`): {grid.npairs} pairs of charged soft spheres (purely "
        "repulsive WCA cores; cation σ 3.0 Å, mass 20 g/mol; anion σ 4.5 Å, mass 60 g/mol) in a continuum "
        f"of relative permittivity ε, Langevin friction and noise (damping {LANGEVIN_DAMP_FS:g} fs) standing "
        f"in for the solvent; T = {grid.temperature_k:g} K, timestep {grid.timestep_fs:g} fs, frames every "
        f"{grid.frame_ps:g} ps, equilibration {grid.equilibration_ps:g} ps. "
        f"l_B = {COULOMB_BJERRUM_A:g} Å / ε at 298 K.",
        *([f"- Variants (the grid file's `variants`; otherwise as above): {'; '.join(variants)}."]
          if variants else []),
        "- Coulomb: PPPM at relative force accuracy 10⁻⁴, stencil order 3, real-space cutoff "
        "18 Å · (c / 1 mol/L)^(−1/3) clamped to 16–26 Å. The cutoff grows with the box; it only splits "
        "the same Ewald sum differently at the same accuracy (2–2.7× faster than 12 Å with order 5).",
        f"- Run length, two stages: a pilot of P segments of {grid.segment_ps:g} ps (P = 1, extended to 2 "
        f"and {grid.max_pilot_segments} while the window rule cannot settle: a window [t, 2t] is settled "
        "when the pilot could test lags up to 8t, two octaves above it, and each difference between its Λ "
        "and those of the windows up to 8t has a relative standard error within the statistical target, "
        "so that a trend that large would have shown; the first 8 systems, c0.200_* and c0.350_*, were "
        "planned before this second condition, and two of those, c0.350_e14 and c0.350_e30, failed the "
        "diffusive check in production) fixes, once, the window and the "
        f"number of production segments, n = ⌈P · (pilot relative statistical error / target)²⌉ clamped "
        f"to [{grid.min_production_segments}, max] ({clamps}). The pilot's data enter no reported number, "
        "so the choice of length cannot bias Λ or its error (no optional stopping). A system whose "
        "production fails the diffusive check is replanned once (`localcond generate --replan-failed`): "
        "all its segments so far become the pilot of a new plan by the same rules, a fresh production "
        "continues the trajectory, and only that production is reported (marked “stage 2” below).",
        "- Window rule: slope-form windows [t, 2t] in half-octave steps, "
        "Λ = P · [⟨|ΔM|²⟩(2t) − ⟨|ΔM|²⟩(t)] / t; the chosen window is the shortest whose Λ differs from "
        "that of every longer supported window by at most z_c block standard errors of the difference, "
        "z_c the Student-t quantile (B − 1 degrees of freedom, B blocks) at the one-sided level of "
        f"{Z_TREND:g} normal standard deviation: {critical_z(Z_TREND, 5):.2f} on the "
        "pilot's 5 blocks. τ-systematic = |Λ(window) − Λ(next disjoint window "
        "[2t, 4t])|, folded in quadrature into the total error √(σ_stat² + τ-sys²). Diffusive check on "
        "the production data: the planned window fails when a longer window differs by more than the "
        f"t-quantile at {Z_CHECK:g} standard deviations "
        f"({critical_z(Z_CHECK, grid.min_production_segments):.2f} with the "
        f"fewest production blocks, {grid.min_production_segments}).",
        f"- Longest supported lag: 1/{BLOCKS_PER_LAG:g} of a block of time origins; each segment keeps "
        f"{grid.sub_blocks} blocks, merged as needed: the pilot uses 5 blocks whatever its length, so "
        f"{', '.join(f'{grid.longest_lag_ps(p):g}' for p in (1, 2, 4))} ps for 1, 2, 4 pilot segments; "
        f"production one block per segment, {grid.longest_lag_ps(grid.sub_blocks):g} ps. Standard errors by block averaging over all blocks of "
        "the production. Λ_NE from the self terms of the same displacements; t+ = ⟨ΔM₊ · ΔM⟩ / ⟨|ΔM|²⟩; "
        "c = N_cations / (N_A V); halves: first and second half of the production, each at the planned "
        "window.",
        f"- Targets (relative error of Λ): {targets}.",
        f"- Training records: per-ion labels at time origins every max({grid.label_min_stride_ps:g} ps, "
        f"production / {grid.label_max_origins}), exact and truncated at R = "
        f"{', '.join(f'{r:g}' for r in grid.label_radii_a)} Å.",
    ]


def _system_line(row: dict, note: str) -> str:
    lam = row["molar_conductivity"]
    share = cation_share(row)
    plan = row["plan"]
    production = f"{row['production_ps'] / 1000:g}"
    if _clamped(row):
        segment_ps = row["production_ps"] / plan["production_segments"]
        production += f" (wanted {plan['wanted_segments'] * segment_ps / 1000:g})"
    cells = [
        row["system"] + (" (stage 2)" if plan.get("replan_of") else "") + (f" [{note}]" if note else ""),
        row["role"],
        f"{row['concentration_mol_per_l']:.3f}", f"{row['dielectric_constant']:g}",
        f"{row['bjerrum_length_A']:.1f}", "–".join(f"{t:g}" for t in row["tau_window_ps"]),
        _pm(lam["value"], lam["stderr"], lam["tau_systematic"]), f"{row['relative_total_error']:.1%}",
        _pm(row["nernst_einstein"]["value"], row["nernst_einstein"]["stderr"]),
        _pm(row["ratio"]["value"], row["ratio"]["stderr"]),
        _pm(share["value"], share["stderr"]) if share else "n/a",
        "yes" if row["diffusive_check_passed"] else "**FAILED**",
        "yes" if row["halves"]["agree_within_2_sigma"] else "NO", production,
        f"{row['temperature_mean_k']:.2f}", f"{row['core_seconds'] / 3600:.2f}",
        str(row["record"]["n_origins"]),
    ]
    return "| " + " | ".join(cells) + " |"


def systems_table(rows: list[dict]) -> list[str]:
    """The table of every finished system, then its warnings as numbered notes."""
    if not rows:
        return ["No system has finished yet."]
    lines = ["| system | role | c (mol/L) | ε | l_B (Å) | window (ps) | Λ ± stat ± τ-sys (S cm²/mol) | "
             "rel. total err | Λ_NE | Λ/Λ_NE | t+ | diffusive check | halves agree | production (ns) | "
             "T (K) | core-h | record origins |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|---:|---:|---:|---:|"]
    notes = []
    for row in rows:
        note = f"w{len(notes) + 1}" if row["diffusive_warnings"] else ""
        lines.append(_system_line(row, note))
        if note:
            status = "" if row["diffusive_check_passed"] else " (FAILED)"
            notes.append(f"- [{note}] `{row['system']}`{status}: {'; '.join(row['diffusive_warnings'])}")
    if notes:
        lines += ["", "Warnings of the diffusive check:", "", *notes]
    return lines


def _kinisi_line(row: dict) -> str:
    lam = row["molar_conductivity"]
    ours = _pm(lam["value"], lam["total_error"])
    fit = row.get("kinisi")
    if not fit:
        return f"| {row['system']} | {ours} | not computed | | | |"
    z = kinisi_z(lam["value"], lam["total_error"], fit["value"], fit["stderr"])
    lags = f"{fit['start_ps']:g}–{fit['max_lag_ps']:g}" if "start_ps" in fit else "n/a"
    mark = "" if fit.get("samples_counted_over") == SAMPLES_COUNTED_OVER else " †"
    return (f"| {row['system']} | {ours} | {_pm(fit['value'], fit['stderr'])}{mark} | {fit['n_parts']} | {lags} | "
            f"{f'{z:+.2f}' if z is not None else 'n/a (one segment)'} |")


def kinisi_section(rows: list[dict]) -> list[str]:
    """kinisi beside our Λ: every held-out system, and training systems the grid fitted too."""
    fitted = [r for r in rows if r["role"] == "heldout" or r["kinisi"]]
    if not fitted:
        return []
    return [
        "## kinisi beside ours", "",
        "kinisi 2.1 (Bayesian linear fit of ⟨|ΔM|²⟩ from the window's start to max(t2, 3 t1), on each "
        "production segment separately) on the same trajectories, the segments combined as a plain mean "
        "of the per-segment fits with the standard error from their scatter (std / √n) — not by inverse "
        "variance: a fit's posterior error grows with its value, so 1/σ² weights pull the mean down. "
        "Held-out systems and the training systems the grid asks kinisi for. "
        "Last column: (kinisi − ours) / √(σ_total² + σ_kinisi²).", "",
        "| system | Λ ours ± total error (S cm²/mol) | Λ kinisi ± scatter | segments | kinisi lags (ps) | "
        "(kinisi − ours) / combined error |",
        "|---|---:|---:|---:|---:|---:|",
        *[_kinisi_line(r) for r in fitted],
        *([] if all((r.get("kinisi") or {}).get("samples_counted_over") == SAMPLES_COUNTED_OVER for r in fitted
                    if r.get("kinisi")) else
          ["", "† fitted before kinisi's sample count was corrected (`localcond.campaign.labels.kinisi_check`): "
               "its posterior was up to 10× too wide and its mean biased high wherever the fit starts at a "
               "short lag; see the notes and `training/kinisi_recheck.json` for refits on fresh segments."]),
    ]


def caveats(grid: GridSpec) -> list[str]:
    """Physics of the model that limits what its Λ means, with D0 and Λ0 computed from the input."""
    d0 = {ion: free_diffusion_cm2_per_s(grid.temperature_k, LANGEVIN_DAMP_FS, mass)
          for ion, mass in ION_MASSES_G_PER_MOL.items()}
    lam0 = limiting_molar_conductivity(grid.temperature_k, sum(d0.values()))
    bjerrum = ", ".join(
        f"{COULOMB_BJERRUM_A * 298.0 / grid.temperature_k / eps / CONTACT_DISTANCE_A:.1f} (ε = {eps:g})"
        for eps in sorted({s.eps for s in grid.systems if s.role == "train"}))
    return [
        "## Model caveats", "",
        "- **No hydrodynamic interactions.** Each ion has its own Langevin bath (friction −(m/damp) v, "
        "so proportional to its mass, and independent noise). The ions' momentum is not conserved and "
        "no solvent carries it from ion to ion: there is no electrophoretic effect. Only ion pairing "
        "and the relaxation of the ionic atmosphere correlate the ions' motion.",
        f"- **Free-ion diffusion** D0 = k_B T · damp / m at T = {grid.temperature_k:g} K, damp = "
        f"{LANGEVIN_DAMP_FS:g} fs: cation (m = {ION_MASSES_G_PER_MOL['cation']:g} g/mol) "
        f"{d0['cation']:.2e} cm²/s, anion (m = {ION_MASSES_G_PER_MOL['anion']:g} g/mol) "
        f"{d0['anion']:.2e} cm²/s, so Λ0 = F² (D0₊ + D0₋) / (R T) = {lam0:.0f} S cm²/mol at infinite "
        "dilution. Ions in a real liquid electrolyte diffuse at ~10⁻⁵ cm²/s: the dynamics here are "
        "one to two orders of magnitude faster and Λ accordingly large; the correlations, not the "
        "time scale, are what the grid is for.",
        "- **Λ/Λ_NE near or slightly above 1 at high ε is allowed.** Λ − Λ_NE is the distinct "
        "(cross-correlation) part of ⟨|ΔM|²⟩. In a momentum-conserving liquid one ion's displacement is "
        "balanced by the others' and the solvent's, which with the electrophoretic effect makes the "
        "distinct terms net negative. Here no such constraint exists: the cross terms come only from "
        "the ions' interactions, which are weak at high ε, and need not be negative.",
        "- **The trend of Λ/Λ_NE with concentration differs from explicit-solvent systems** such as "
        "Jones et al.'s: there the solvent's structure (solvation shells, solvent-separated pairs), a "
        "permittivity and viscosity that change with concentration, and momentum transport shape it. "
        "Here the dielectric is a constant continuum and the friction fixed; ion pairing is controlled "
        f"only by l_B over the contact distance {CONTACT_DISTANCE_A:g} Å (cation–anion σ): l_B / d = "
        f"{bjerrum} (Bjerrum: pairing above 2). The ratio follows that of a primitive model, and may "
        "rise with concentration where pairs dominate at low c.",
    ]


def truncation_section(truncation: dict) -> list[str]:
    lines = ["## Truncated labels versus R", "",
             "λ_i^R keeps only ions within R of i at t0 in ΔM. Mean over the same origins relative to "
             "the exact labels (1 = unbiased; error from segment-to-segment scatter) and the variance "
             f"reduction; `{truncation['command']}`.", "",
             "| system | R (Å) | mean(λ^R) / mean(λ) | variance reduction |", "|---|---:|---:|---:|"]
    for system in truncation["systems"]:
        for row in system["rows"]:
            lines.append(f"| {system['system']} | {row['radius_A']:g} | {row['mean_ratio']:.3f} ± "
                         f"{row['mean_ratio_stderr']:.3f} | {row['variance_reduction']:.1f}× |")
    return lines


def replica_section(replicas: dict) -> list[str]:
    """Independent replicas of every system (``localcond replicas``): are the errors
    calibrated, and does Λ(τ) still move beyond the window (:mod:`localcond.campaign.long_lag`)?"""
    cal = replicas["calibration"]
    rows = replicas["systems"]
    moved = [r for r in rows if r.get("long_lag_check", {}).get("systematic", 0.0) > 0]
    lines = [
        "## Independent replicas: error calibration and long lags", "",
        f"Every system was run again from a fresh start with new seeds (`{replicas['command']}`, "
        f"`training/replica_systems.json`: {rows[0]['production_ps'] / 1000:g} ns each). Each replica's Λ at "
        "the card's window against the card's Λ: z = (Λ_replica − Λ) / √(σ_replica² + σ_total²).", "",
        f"- **Errors calibrated: {'yes' if cal['calibrated'] else 'no'}.** rms z = {cal['rms_z']:.2f} ± "
        f"{cal['rms_z_stderr']:.2f} over {cal['n']} systems (1 if the errors are right), mean z "
        f"{cal['mean_z']:+.2f}; |z| > 2 for {len(cal['beyond_2_sigma'])} "
        f"({', '.join(cal['beyond_2_sigma']) or 'none'}) where {cal['expected_beyond_2_sigma']:.1f} are expected. "
        + ("So the grid's errors, those of the systems with only 4 blocks included, need no extension."
           if cal["calibrated"] else "The grid's errors are not calibrated: extend the runs."),
        "- **Long lags.** The grid's run and the replica, pooled, tested at windows [45, 90] and [64, 128] ps "
        "against the window's value; where the change exceeds its error, the part its error does not "
        "explain, √max(0, Δ² − σ_Δ²), is a long-lag systematic, and the total error becomes "
        "√(stderr² + max(τ-systematic, long-lag systematic)²) (`long_lag_check.total_error` in the "
        f"replica table). {len(moved)} of {len(rows)} systems gain one:", "",
        "| system | window (ps) | Λ at window (pooled) | Λ at 45–128 ps | z | long-lag systematic | total error: card → now |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in moved:
        c = r["long_lag_check"]
        lines.append(f"| {r['system']} | {c['window_ps'][0]:g}–{c['window_ps'][1]:g} | {_pm(c['window']['value'], c['window']['stderr'])} "
                     f"| {_pm(c['long']['value'], c['long']['stderr'])} | {c['z']:+.2f} | {c['systematic']:.0f} "
                     f"| {r['card']['total_error']:.0f} → {c['total_error']:.0f} |")
    return lines


def figures_section(overview: str, windows: str) -> list[str]:
    return [
        "## Figures", "",
        f"![Λ and Λ/Λ_NE over the grid]({overview})", "",
        "Figure 1: Λ (error bars: total error) and Λ/Λ_NE (statistical error) over concentration, one "
        "line per ε; held-out systems as stars; systems failing the diffusive check crossed in red.", "",
        f"![Λ(τ) and the chosen window of every system]({windows})", "",
        "Figure 2: one panel per system (training: rows ε, columns c; held-out in the last row). Line "
        "and band: ratio form Λ(τ) ± σ; dots: slope-form windows [t, 2t] at √2 t ± σ (filled: passes "
        "the window rule); grey span: chosen window; orange band: reported Λ ± total error; grey line "
        "(right axis): log-slope of ⟨|ΔM|²⟩, dotted at 1 (diffusive). FAILED: diffusive check failed.",
    ]


def render(grid: GridSpec, rows: list[dict], figures: tuple[str, str] | None,
           truncation: dict | None = None, replicas: dict | None = None,
           commands: tuple[str, str] = ("localcond generate training/grid.json --jobs 2",
                                        "localcond data-card")) -> str:
    """The card's Markdown; ``figures``: paths of the overview and window figures relative to the
    card; ``commands``: the ones that regenerate the grid and the card."""
    out = [
        f"# Data card: grid `{grid.name}`", "",
        "Ground truth: model 1:1 electrolytes (charged soft spheres in a continuum dielectric, "
        "Langevin friction standing in for the solvent) simulated with LAMMPS, each with its "
        "Einstein–Helfand molar conductivity Λ in a diffusive window chosen from the data, Λ_NE, "
        "their errors and checks, and a compact per-ion training record. Regenerate with "
        f"`{commands[0]}` (resumable from the committed per-segment "
        f"progress in `training/progress/`), then `{commands[1]}`.", "",
        "## Model and protocol", "", *protocol(grid), "",
        "## Checks", "", *[f"- {line}" for line in checks(grid, rows)], "",
        "## Systems", "", *systems_table(rows), "",
    ]
    kinisi = kinisi_section(rows)
    out += [*kinisi, ""] if kinisi else []
    out += [*caveats(grid), ""]
    if figures:
        out += [*figures_section(*figures), ""]
    if replicas and replicas.get("calibration", {}).get("n"):
        out += [*replica_section(replicas), ""]
    if truncation:
        out += [*truncation_section(truncation), ""]
    return "\n".join(out)


# --- figures ------------------------------------------------------------------
def _error(x: float | None) -> float:
    return x if _finite(x) else 0.0


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _save(fig: Figure, path: Path, dpi: int) -> None:
    """Write ``fig`` as PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def plot_overview(rows: list[dict], path: Path) -> None:
    """Figure 1: Λ (total error) and Λ/Λ_NE over concentration per ε, held-out systems as stars."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    fig = Figure(figsize=OVERVIEW_INCHES)
    axes = fig.subplots(1, 2)
    series = (("molar_conductivity", "total_error"), ("ratio", "stderr"))
    train = [r for r in rows if r["role"] == "train"]
    # one line per ε and variant (a grid variant's name suffix, e.g. _s2.5: lines never join two sizes)
    keys = sorted({(r["dielectric_constant"], _variant_of(r["system"])) for r in train})
    groups = [(f"ε = {eps:g}" + (f", {variant.lstrip('_')}" if variant else ""), dict(marker="o"),
               sorted((r for r in train if (r["dielectric_constant"], _variant_of(r["system"])) == (eps, variant)),
                      key=lambda r: r["concentration_mol_per_l"]))
              for eps, variant in keys]
    groups.append(("held out", dict(fmt="k*", markersize=10), [r for r in rows if r["role"] == "heldout"]))
    failed = [r for r in rows if not r["diffusive_check_passed"]]
    for ax, (key, err) in zip(axes, series):
        for label, style, sel in groups:
            if sel:
                ax.errorbar([r["concentration_mol_per_l"] for r in sel], [r[key]["value"] for r in sel],
                            [_error(r[key][err]) for r in sel], capsize=3, label=label, **style)
        if failed:
            ax.plot([r["concentration_mol_per_l"] for r in failed], [r[key]["value"] for r in failed],
                    "rx", markersize=11, markeredgewidth=2, label="diffusive check FAILED")
        ax.set_xlabel("concentration (mol/L)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[0].set_ylabel("Λ (S cm²/mol)")
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[0].yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[1].set_ylabel("Λ / Λ_NE")
    axes[1].axhline(1.0, color="grey", lw=0.5)
    for ax, (key, _) in zip(axes, series):  # a held-out variant says which it is
        for r in groups[-1][2]:
            if _variant_of(r["system"]):
                ax.annotate(_variant_of(r["system"]).lstrip("_"), (r["concentration_mol_per_l"], r[key]["value"]),
                            xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, OVERVIEW_DPI)


def _variant_of(system: str) -> str:
    """A grid variant's suffix of a system's name (``_s2.5``, ``_m4``; localcond.campaign.grid),
    empty for the plain electrolyte."""
    match = re.fullmatch(r"c[\d.]+_e[\d.]+(.*)_r\d+", system)
    return match.group(1) if match else ""


def panel_layout(rows: list[dict]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """(rows, columns, system → (row, column)) of the window figure: training
    systems by ε (rows) × nominal concentration and replica (columns), held-out
    systems after them, filling rows in table order."""
    train = [r for r in rows if r["role"] == "train"]
    held = [r for r in rows if r["role"] != "train"]
    eps = sorted({r["dielectric_constant"] for r in train})

    def column(r: dict) -> tuple[float, int]:
        return r["concentration_nominal_mol_per_l"], r["replica"]

    columns = sorted({column(r) for r in train})
    ncols = max(len(columns), MIN_PANEL_COLUMNS)
    where = {r["system"]: (eps.index(r["dielectric_constant"]), columns.index(column(r))) for r in train}
    where.update({r["system"]: (len(eps) + i // ncols, i % ncols) for i, r in enumerate(held)})
    return len(eps) + math.ceil(len(held) / ncols), ncols, where


def _y_range(row: dict) -> tuple[float, float]:
    """Λ axis (S cm²/mol): from 0 (or the lowest window value) to just above the curve, the
    window values and the reported Λ + total error."""
    curves, lam = row["curves"], row["molar_conductivity"]
    band = _floats(curves["lambda_ratio_form"]) + np.nan_to_num(_floats(curves["lambda_ratio_form_stderr"]))
    values = np.concatenate([band, [w["value"] for w in row["windows"]],
                             [lam["value"] + _error(lam["total_error"])]])
    values = values[np.isfinite(values)]
    return min(0.0, 1.1 * values.min()), 1.1 * values.max()


def _draw_panel(ax: Axes, row: dict) -> None:
    """One system: ratio-form Λ(τ) ± σ, slope-form windows, chosen window, Λ ± total error,
    and the log-slope of ⟨|ΔM|²⟩ on a twin axis."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    curves, lam = row["curves"], row["molar_conductivity"]
    lags = _floats(curves["lags_ps"])
    ratio = _floats(curves["lambda_ratio_form"])
    ratio_err = np.nan_to_num(_floats(curves["lambda_ratio_form_stderr"]))
    ax.axvspan(*row["tau_window_ps"], color=COLOURS["chosen"], lw=0, zorder=0)
    total = _error(lam["total_error"])
    ax.axhspan(lam["value"] - total, lam["value"] + total, color=COLOURS["final"], alpha=0.3, lw=0)
    ax.axhline(lam["value"], color=COLOURS["final"], lw=1)
    ax.fill_between(lags, ratio - ratio_err, ratio + ratio_err, color=COLOURS["ratio"], alpha=0.25, lw=0)
    ax.plot(lags, ratio, color=COLOURS["ratio"], lw=1.2)
    for passes in (True, False):
        sel = [w for w in row["windows"] if bool(w["passes"]) == passes]
        if sel:
            ax.errorbar([math.sqrt(w["tau_window_ps"][0] * w["tau_window_ps"][1]) for w in sel],
                        [w["value"] for w in sel], [_error(w["stderr"]) for w in sel], fmt="o",
                        markersize=3.5, capsize=2, lw=0.8, color=COLOURS["windows"],
                        markerfacecolor=COLOURS["windows"] if passes else "white")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(*_y_range(row))
    ax.set_xlabel("τ (ps)", fontsize=7, labelpad=1)
    ax.set_ylabel("Λ (S cm²/mol)", fontsize=7, labelpad=1)
    ax.tick_params(labelsize=6, pad=1)
    twin = ax.twinx()
    slope = _floats(curves["logslope_dM2"])
    ok = np.isfinite(slope)
    twin.plot(lags[ok], slope[ok], color=COLOURS["slope"], lw=0.9)
    twin.axhline(1.0, color=COLOURS["slope"], ls=":", lw=0.9)
    twin.set_ylim(0.0, SLOPE_AXIS_MAX)
    twin.set_ylabel("log-slope ⟨|ΔM|²⟩", fontsize=7, labelpad=1, color=COLOURS["slope"])
    twin.tick_params(labelsize=6, pad=1, colors=COLOURS["slope"])
    failed = not row["diffusive_check_passed"]
    title = (row["system"] + (" (held out)" if row["role"] == "heldout" else "")
             + (" FAILED" if failed else ""))
    ax.set_title(title, fontsize=8, pad=2, color="red" if failed else "black",
                 fontweight="bold" if failed else "normal")


def _legend_handles() -> list[Artist]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], color=COLOURS["ratio"], lw=1.2, label="ratio form Λ(τ) ± σ"),
        Line2D([], [], color=COLOURS["windows"], marker="o", ls="", markersize=4,
               label="slope-form windows at √2 t (filled: pass the rule)"),
        Patch(color=COLOURS["chosen"], label="chosen window"),
        Patch(color=COLOURS["final"], alpha=0.5, label="reported Λ ± total error"),
        Line2D([], [], color=COLOURS["slope"], lw=0.9, label="log-slope of ⟨|ΔM|²⟩, right axis (dotted: 1)"),
    ]


def window_figure(rows: list[dict]) -> tuple[Figure, list[Axes]]:
    """Figure 2 and its Λ axes, one per row (system), laid out by :func:`panel_layout`."""
    from matplotlib.figure import Figure

    nrows, ncols, where = panel_layout(rows)
    width, height = PANEL_INCHES
    fig = Figure(figsize=(width * ncols, height * nrows + LEGEND_INCHES), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    panels = []
    for row in rows:
        i, j = where[row["system"]]
        ax = fig.add_subplot(grid[i, j])
        _draw_panel(ax, row)
        panels.append(ax)
    fig.legend(handles=_legend_handles(), loc="outside upper center", ncol=3, fontsize=8, frameon=False)
    return fig, panels


def plot_windows(rows: list[dict], path: Path) -> int:
    """Write figure 2 to ``path`` (PNG); returns the number of panels."""
    fig, panels = window_figure(rows)
    _save(fig, path, WINDOW_DPI)
    return len(panels)


def windows_plot_path(plot_path: Path) -> Path:
    """``training/data_card.png`` → ``training/data_card_windows.png``."""
    return plot_path.with_name(f"{plot_path.stem}_windows{plot_path.suffix}")


# --- the card -----------------------------------------------------------------
def _write_text(path: Path, text: str) -> None:
    write_text(path, text)


def write_data_card(grid_path: str | Path, table: str | Path, out: str | Path,
                    plot_path: str | Path | None) -> Path:
    """Write the card ``out`` (Markdown) for the grid's rows of ``table``; with ``plot_path``
    also figure 1 there and figure 2 beside it (:func:`windows_plot_path`). Appends
    ``data_card_notes.md`` and reads ``truncation_study.json`` and ``replica_systems.json``
    (independent replicas, :mod:`localcond.campaign.replicas`) next to the table if present;
    a table ``systems_X.json`` has its own: ``data_card_notes_X.md``, and so on."""
    grid = load_grid(grid_path)
    suffix = Path(table).stem.removeprefix("systems")

    def companion(name: str) -> Path:
        stem, ext = name.split(".")
        return Path(table).with_name(f"{stem}{suffix}.{ext}")

    table, out = Path(table), Path(out)
    order = {s.name: i for i, s in enumerate(grid.systems)}
    rows = sorted((r for r in json.loads(table.read_text())["systems"] if r.get("grid") == grid.name),
                  key=lambda r: order.get(r["system"], len(order)))
    figures = None
    if plot_path and rows:
        overview = Path(plot_path)
        windows = windows_plot_path(overview)
        plot_overview(rows, overview)
        plot_windows(rows, windows)
        figures = (os.path.relpath(overview, out.parent), os.path.relpath(windows, out.parent))
    study = companion("truncation_study.json")
    replicas = companion("replica_systems.json")
    commands = (f"localcond generate {_input_name(Path(grid_path).resolve())} --table {table} --jobs 2",
                f"localcond data-card --grid {grid_path} --table {table} --out {out}"
                + (f" --plot {plot_path}" if plot_path else ""))
    if suffix == "" and Path(grid_path).name == "grid.json":  # the defaults of both commands
        commands = ("localcond generate training/grid.json --jobs 2", "localcond data-card")
    text = render(grid, rows, figures, json.loads(study.read_text()) if study.exists() else None,
                  json.loads(replicas.read_text()) if replicas.exists() else None, commands)
    notes = companion("data_card_notes.md")
    if notes.exists():
        text += "\n" + notes.read_text()
    _write_text(out, text)
    return out
