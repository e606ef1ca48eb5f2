"""``localcond conductivity`` and ``labels``: Einstein-Helfand numbers and per-ion labels from LAMMPS dumps."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localcond.cli import positive
from localcond.errors import LocalcondError


def _cmd_conductivity(args: argparse.Namespace) -> int:
    from localcond.campaign.labels.conductivity import Settings, accumulate, analyse, write_json

    settings = Settings(
        timestep_fs=args.timestep_fs, temperature_k=args.temperature_k, tau_ps=args.tau_ps,
        tau_window_ps=tuple(args.tau_window_ps) if args.tau_window_ps else None,
        max_lag_ps=args.max_lag_ps, n_blocks=args.blocks, error=args.error,
        concentration=args.concentration, n_salt=args.n_salt, ion_types=_ion_types(args.types, args.molecules),
        molecules=args.molecules, current=args.current,
    )
    summary = analyse(accumulate(args.dumps, settings, progress=sys.stderr.isatty()), settings)
    path = write_json(summary, args.json, args.dumps)
    lam, ne, ratio = summary["molar_conductivity"], summary["nernst_einstein"], summary["ratio"]
    tau = summary.get("tau_ps") or summary.get("tau_window_ps")

    def fmt(entry: dict) -> str:
        err = entry["stderr"]
        return f"{entry['value']:.4g} +- {err:.2g}" if err is not None else f"{entry['value']:.4g}"

    systematic = ""
    if "tau_systematic" in lam:
        systematic = (f" (statistical) +- {lam['tau_systematic']:.2g} (tau-systematic) = "
                      f"+- {lam['total_error']:.2g} total")
    print(f"Lambda_EH = {fmt(lam)}{systematic} S cm^2/mol, Lambda_NE = {fmt(ne)} S cm^2/mol, "
          f"ratio = {fmt(ratio)} ({summary['form']} form, tau = {tau} ps, {summary['tau_chosen']}; "
          f"{summary['error_method']}); wrote {path}")
    for warning in summary["diffusive_check"]["warnings"]:
        print(f"localcond conductivity: warning: {warning}", file=sys.stderr)
    return 0


def _ion_types(names: Sequence[str] | None, molecules: bool = False) -> tuple[int, ...] | None:
    """Atom types (1-based) whose entry in --types is not NULL; None without --types."""
    if molecules and not names:
        raise LocalcondError("--molecules needs --types: the type of each molecular ion's centre atom (NULL for "
                             "its other atoms and the solvent)")
    if not names:
        return None
    types = tuple(k + 1 for k, name in enumerate(names) if name.upper() != "NULL")
    if not types:
        raise LocalcondError("--types names no ion type (all NULL)")
    return types


def _cmd_labels(args: argparse.Namespace) -> int:
    from localcond.campaign.labels.per_ion import LabelSettings, label_files

    settings = LabelSettings(
        timestep_fs=args.timestep_fs, temperature_k=args.temperature_k, tau_ps=args.tau_ps,
        tau_window_ps=tuple(args.tau_window_ps) if args.tau_window_ps else None,
        radii=tuple(args.radii or ()), origin_stride=args.origin_stride, n_salt=args.n_salt,
        ion_types=_ion_types(args.types, args.molecules), molecules=args.molecules,
    )
    for path in label_files(args.dumps, settings, args.out_dir):
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    def trajectory_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dumps", nargs="+", help="LAMMPS text dumps with id type q and xu yu zu, or x y z ix iy iz (.gz ok)")
        p.add_argument("--timestep-fs", type=positive, required=True, help="MD timestep in fs")
        p.add_argument("--temperature-k", type=positive, required=True,
                       help="the thermostat's target temperature in K")
        p.add_argument("--n-salt", type=float, help="number of formula units (overrides --concentration)")
        p.add_argument("--types", nargs="+", metavar="NAME", help="one name (or NULL) per atom type: only "
                       "the non-NULL types are ions (default: every charged atom is an ion; use this when "
                       "a solvent carries partial charges)")
        p.add_argument("--molecules", action="store_true",
                       help="molecular ions, from the dump's mol column: each atom of a --types ion type is the "
                       "centre of one ion, which carries its molecule's total charge (dump id mol type q ...)")

    p = sub.add_parser("conductivity", help="Einstein-Helfand and Nernst-Einstein molar conductivity")
    trajectory_args(p)
    tau = p.add_mutually_exclusive_group()
    tau.add_argument("--tau-ps", type=float, help="ratio form at this lag (default: the slope form "
                     "over the window chosen by the diffusive-window rule)")
    tau.add_argument("--tau-window-ps", type=float, nargs=2, metavar=("TAU1", "TAU2"),
                     help="slope form between two lags given by you (default: chosen by the rule)")
    p.add_argument("--max-lag-ps", type=float, help="longest lag examined (default: the length of "
                   "one block of time origins)")
    p.add_argument("--blocks", type=int, default=5, help="blocks of time origins per trajectory (default 5)")
    p.add_argument("--error", choices=["blocks", "replicas"], default="blocks",
                   help="standard errors from blocks of origins or from independent replicas (the dumps)")
    p.add_argument("--concentration", choices=["cations", "anions"], default="cations",
                   help="c = number of cations (or anions) / (N_A V)")
    p.add_argument("--current", choices=["ions", "all"], default="ions",
                   help="ions: dM from the ions alone (default); all: from every charged atom in the dump, "
                   "adding the solvent's and molecular ions' polarisation current (bounded: changes short lags, "
                   "not the long-time Lambda; needs every atom's unwrapped position)")
    p.add_argument("--json", required=True, help="output summary (JSON)")
    p.set_defaults(func=_cmd_conductivity)

    p = sub.add_parser("labels", help="per-ion labels lambda_i(t0; tau) as an NPZ dataset per dump")
    trajectory_args(p)
    p.add_argument("--tau-ps", type=float, required=True)
    p.add_argument("--tau-window-ps", type=float, nargs=2, metavar=("TAU1", "TAU2"),
                   help="also the slope-form labels")
    p.add_argument("--radii", type=float, nargs="+", help="also labels truncated at these radii (A)")
    p.add_argument("--origin-stride", type=int, default=1, help="use every k-th frame as an origin")
    p.add_argument("--out-dir", default=".", help="directory for DUMPNAME.labels.npz")
    p.set_defaults(func=_cmd_labels)
