"""``localcond data-card``: the data card of a generated grid (Markdown table of
every system's measured conductivities with errors, the checks the data must
pass, cost) and a plot of Λ and Λ/Λ_NE over the grid."""

from __future__ import annotations

import json
import os
from pathlib import Path

from localcond.generate import GridSpec, load_grid

TRAIN_MAX_RELATIVE_ERROR = 0.10
HELDOUT_MAX_RELATIVE_ERROR = 0.05
MAX_TEMPERATURE_DEVIATION = 0.01


def _pm(entry: dict, digits: int = 3) -> str:
    value, err = entry["value"], entry.get("stderr")
    return f"{value:.{digits}g} ± {err:.2g}" if err is not None else f"{value:.{digits}g}"


def checks(grid: GridSpec, rows: list[dict]) -> list[str]:
    """One line per requirement, saying whether the measured data meet it."""
    by_name = {r["system"]: r for r in rows}
    lines = []
    for role, limit in (("train", TRAIN_MAX_RELATIVE_ERROR), ("heldout", HELDOUT_MAX_RELATIVE_ERROR)):
        planned = [s for s in grid.systems if s.role == role]
        done = [by_name[s.name] for s in planned if s.name in by_name]
        ok = [r for r in done if r["relative_error"] <= limit]
        lines.append(f"{role}: {len(done)} of {len(planned)} systems done; {len(ok)} with relative "
                     f"error of Lambda_EH <= {limit:.0%}")
    if rows:
        ratios = [r["ratio"]["value"] for r in rows]
        lams = [r["molar_conductivity"]["value"] for r in rows]
        lines.append(f"Lambda/Lambda_NE spans {min(ratios):.3f} to {max(ratios):.3f}; Lambda spans "
                     f"{min(lams):.4g} to {max(lams):.4g} S cm^2/mol (x{max(lams) / min(lams):.1f})")
        agree = sum(r["halves"]["agree_within_2_sigma"] for r in rows)
        lines.append(f"first and second halves of production agree within 2 sigma: {agree} of {len(rows)}")
        warm = [r for r in rows if abs(r["temperature_relative_deviation"]) <= MAX_TEMPERATURE_DEVIATION]
        lines.append(f"mean temperature within 1 % of {grid.temperature_k:g} K: {len(warm)} of {len(rows)}")
        hours = sum(r["core_seconds"] for r in rows) / 3600
        lines.append(f"cost so far: {hours:.2f} core-hours of LAMMPS")
    return lines


def render(grid: GridSpec, rows: list[dict], plot_name: str | None,
           truncation: dict | None = None) -> str:
    out = [
        f"# Data card: grid `{grid.name}`",
        "",
        "Model 1:1 electrolytes simulated with LAMMPS for ground-truth molar conductivities.",
        "Regenerate with `localcond generate training/grid.json --jobs 2` (resumable; systems",
        "already in `training/systems.json` are kept), then `localcond data-card`.",
        "",
        "## Model and protocol",
        "",
        f"- Input: `{os.path.relpath(grid.input_file, Path.cwd()) if grid.input_file.is_absolute() else grid.input_file}`"
        " — charged soft spheres (WCA cores, cation σ 3.0 Å / mass 20, anion σ 4.5 Å / mass 60),",
        "  Coulomb screened by a continuum permittivity ε (PPPM 1e-4, 12 Å), Langevin friction",
        "  (damping 500 fs) standing in for the solvent; units real.",
        f"- {grid.npairs} ion pairs, T = {grid.temperature_k:g} K, timestep {grid.timestep_fs:g} fs, "
        f"equilibration {grid.equilibration_ps:g} ps, production in {grid.segment_ps:g} ps segments, "
        f"frames every {grid.dump_every * grid.timestep_fs / 1000:g} ps.",
        f"- Λ_EH: ratio form at τ = {grid.tau_ps:g} ps; c = N_cations/(N_A V); standard errors by block "
        f"averaging ({grid.blocks_per_segment} blocks per segment); Λ_NE from the same displacements.",
        "- Bjerrum length l_B = 560.6 Å / ε at 298 K.",
        "",
        "## Checks",
        "",
        *[f"- {line}" for line in checks(grid, rows)],
        "",
        "## Systems",
        "",
        "| system | role | c (mol/L) | ε | l_B (Å) | Λ_EH (S cm²/mol) | rel. err | Λ_NE | Λ/Λ_NE | t+ | halves agree | T (K) | core-h |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|",
    ]
    for r in rows:
        share = r["species_share_of_conductivity"].get("1", {"value": float("nan")})
        out.append(
            f"| {r['system']} | {r['role']} | {r['concentration_mol_per_l']:.3f} | {r['dielectric_constant']:g} | "
            f"{r['bjerrum_length_A']:.1f} | {_pm(r['molar_conductivity'])} | {r['relative_error']:.1%} | "
            f"{_pm(r['nernst_einstein'])} | {_pm(r['ratio'])} | {share['value']:.2f} | "
            f"{'yes' if r['halves']['agree_within_2_sigma'] else 'NO'} | {r['temperature_mean_k']:.2f} | "
            f"{r['core_seconds'] / 3600:.2f} |"
        )
    held = [r for r in rows if r["role"] == "heldout"]
    if held:
        out += ["", "## Held-out systems: kinisi beside ours", "",
                "kinisi 2.1 (Bayesian fit of ⟨|ΔM|²⟩ over lags from τ to 3τ, per segment, combined by "
                "inverse variance; its posterior error is known to be 1.5–2× too small) on the same "
                "trajectories.", "",
                "| system | Λ_EH (ours) | Λ (kinisi) | difference / combined error |", "|---|---:|---:|---:|"]
        for r in held:
            k = r.get("kinisi")
            if not k:
                out.append(f"| {r['system']} | {_pm(r['molar_conductivity'])} | not computed | |")
                continue
            ours = r["molar_conductivity"]
            z = (k["value"] - ours["value"]) / (ours["stderr"] ** 2 + k["stderr"] ** 2) ** 0.5
            out.append(f"| {r['system']} | {_pm(ours)} | {_pm(k)} | {z:+.1f} |")
    if plot_name:
        out += ["", f"![Lambda and Lambda/Lambda_NE over the grid]({plot_name})"]
    if truncation:
        out += ["", "## Truncated labels versus R", "",
                "λ_i^R keeps only ions within R of i at t0 in ΔM. Mean over the same origins relative to "
                "the exact labels (1 = unbiased; error from segment-to-segment scatter) and the variance "
                f"reduction; `{truncation['command']}`.", "",
                "| system | R (Å) | mean(λ^R) / mean(λ) | variance reduction |", "|---|---:|---:|---:|"]
        for system in truncation["systems"]:
            for row in system["rows"]:
                out.append(f"| {system['system']} | {row['radius_A']:g} | {row['mean_ratio']:.3f} ± "
                           f"{row['mean_ratio_stderr']:.3f} | {row['variance_reduction']:.1f}× |")
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    eps_values = sorted({r["dielectric_constant"] for r in rows if r["role"] == "train"})
    for eps in eps_values:
        sel = sorted((r for r in rows if r["role"] == "train" and r["dielectric_constant"] == eps),
                     key=lambda r: r["concentration_mol_per_l"])
        c = [r["concentration_mol_per_l"] for r in sel]
        for ax, key in zip(axes, ("molar_conductivity", "ratio")):
            ax.errorbar(c, [r[key]["value"] for r in sel], [r[key]["stderr"] or 0 for r in sel],
                        marker="o", capsize=3, label=f"ε = {eps:g}")
    held = [r for r in rows if r["role"] == "heldout"]
    for ax, key in zip(axes, ("molar_conductivity", "ratio")):
        if held:
            ax.errorbar([r["concentration_mol_per_l"] for r in held], [r[key]["value"] for r in held],
                        [r[key]["stderr"] or 0 for r in held], fmt="k*", markersize=10, capsize=3,
                        label="held out")
        ax.set_xlabel("concentration (mol/L)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes[0].set_ylabel("Λ_EH (S cm²/mol)")
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes[1].set_ylabel("Λ_EH / Λ_NE")
    axes[1].axhline(1.0, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_data_card(grid_path: str | Path, table: str | Path, out: str | Path,
                    plot_path: str | Path | None) -> Path:
    grid = load_grid(grid_path)
    data = json.loads(Path(table).read_text())
    order = {s.name: i for i, s in enumerate(grid.systems)}
    rows = sorted((r for r in data["systems"] if r.get("grid") == grid.name),
                  key=lambda r: order.get(r["system"], 1 << 30))
    out = Path(out)
    plot_name = None
    if plot_path and rows:
        plot(rows, Path(plot_path))
        plot_name = os.path.relpath(plot_path, out.parent)
    study = Path(table).with_name("truncation_study.json")
    truncation = json.loads(study.read_text()) if study.exists() else None
    notes = Path(table).with_name("data_card_notes.md")
    text = render(grid, rows, plot_name, truncation)
    if notes.exists():
        text += "\n" + notes.read_text()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out
