"""``localcond generate``, ``dataset``, ``data-card``: the training grid and its compact records."""

from __future__ import annotations

import argparse
import sys

from localcond.cli import positive
from localcond.errors import LocalcondError


def _cmd_generate(args: argparse.Namespace) -> int:
    from localcond.campaign.generate import generate

    if args.reanalyse:
        from localcond.campaign.generate import reanalyse

        results = reanalyse(args.grid, args.table, args.progress_dir, args.records_dir)
        print(f"{len(results)} systems reanalysed from {args.progress_dir}; table in {args.table}")
        return 0
    results = generate(args.grid, args.data_dir, args.table, args.progress_dir, args.records_dir,
                       only=args.only, jobs=args.jobs, replan_failed=args.replan_failed)
    print(f"{len(results)} systems done; table in {args.table}")
    return 0


def _cmd_replicas(args: argparse.Namespace) -> int:
    from localcond.campaign.replicas import run_replicas

    rows = run_replicas(args.replicas, args.data_dir, args.table, args.card_table, args.progress_dir,
                        args.records_dir, jobs=args.jobs, only=args.only)
    print(f"{len(rows)} replicas complete; table in {args.table}")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from localcond.campaign.dataset import build_from_dumps, check_directory, sha256, update_manifest

    if args.check is not None:
        directories = args.check or sorted(p.parent for p in Path("training/data").glob("*/manifest.json"))
        if not directories:
            raise LocalcondError("no manifest found under training/data/; give the directory to check")
        for directory in directories:
            rows = check_directory(directory)
            for row in rows:
                if "mean_label" in row:  # a training record
                    what = (f"mean label {row['mean_label']:.6g} = Lambda over the same origins "
                            f"{row['lambda_same_origins']:.6g} S cm^2/mol")
                else:  # dense labels
                    what = (f"per-ion a_i sum to the collective |dM|^2/tau at every origin and lag "
                            f"({', '.join(f'{t:g}' for t in row['lags_ps'])} ps; largest mismatch "
                            f"{row['largest_relative_mismatch']:.1e} of sum |a_i|)")
                print(f"{directory}/{row['record']}: sha256 ok, {row['n_origins']} origins, {what}")
            print(f"{directory}: {len(rows)} records verified")
        return 0
    if not args.dumps or not args.out or not args.types:
        raise LocalcondError("give DUMP... --types NAME... --timestep-fs DT --temperature-k T --out FILE.npz "
                             "(or --check [DIR...])")
    if args.timestep_fs is None or args.temperature_k is None:
        raise LocalcondError("--timestep-fs and --temperature-k are required to build a record")
    species = {k + 1: (None if name.upper() == "NULL" else name) for k, name in enumerate(args.types)}
    path, meta = build_from_dumps(
        args.dumps, species, args.timestep_fs, args.temperature_k, args.out,
        window_ps=tuple(args.window_ps) if args.window_ps else None, radii=tuple(args.radii or ()),
        stride_ps=args.stride_ps, max_origins=args.max_origins, molecules=args.molecules)
    update_manifest(path.parent, path, {"command": " ".join(["localcond", *sys.argv[1:]]),
                                        "system": meta["system"]})
    lam = meta["molar_conductivity"]
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {sha256(path)[:12]}…): Lambda = "
          f"{lam['value']:.4g} +- {lam['stderr']:.2g} S cm^2/mol over {meta['tau_window_ps'][0]:g}-"
          f"{meta['tau_window_ps'][1]:g} ps")
    for warning in meta["diffusive_warnings"]:
        print(f"localcond dataset: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_data_card(args: argparse.Namespace) -> int:
    from localcond.campaign.datacard import write_data_card

    path = write_data_card(args.grid, args.table, args.out, args.plot)
    print(f"wrote {path}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="simulate a grid of model electrolytes and measure "
                       "their conductivity (resumable)")
    p.add_argument("grid", help="grid file (JSON), e.g. training/grid.json")
    p.add_argument("--data-dir", default="data", help="where trajectories go (default: data/)")
    p.add_argument("--table", default="training/systems.json",
                   help="per-system results table to update (default: training/systems.json)")
    p.add_argument("--progress-dir", default="training/progress",
                   help="committed per-segment state that a new machine resumes from "
                   "(default: training/progress/)")
    p.add_argument("--records-dir", default="training/data",
                   help="compact training records, one per finished system (default: training/data/)")
    p.add_argument("--only", nargs="+", metavar="SYSTEM", help="run only these systems")
    p.add_argument("--reanalyse", action="store_true", help="redo the analysis of every system whose "
                   "production is complete in the progress directory (no LAMMPS), then stop")
    p.add_argument("--jobs", type=int, default=1, help="systems run at the same time (default 1)")
    p.add_argument("--replan-failed", action="store_true", help="once per system, replan the systems whose "
                   "production failed the diffusive check (all their segments so far become the pilot) and "
                   "run a fresh production")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("replicas", help="fresh independent replicas of a grid's systems with dense "
                       "per-ion labels at short lags (resumable)")
    p.add_argument("replicas", help="replica file (JSON), e.g. training/replicas.json")
    p.add_argument("--data-dir", default="data", help="where trajectories go (default: data/)")
    p.add_argument("--table", default="training/replica_systems.json", help="replica table to write")
    p.add_argument("--card-table", default="training/systems.json",
                   help="the base grid's table, whose windows and Lambda the replicas are compared with")
    p.add_argument("--progress-dir", default="training/progress", help="committed per-segment state")
    p.add_argument("--records-dir", default="training/data", help="where the dense-label records go")
    p.add_argument("--only", nargs="+", metavar="SYSTEM", help="run only these systems")
    p.add_argument("--jobs", type=int, default=1, help="segments run at the same time (default 1)")
    p.set_defaults(func=_cmd_replicas)

    p = sub.add_parser("dataset", help="build a compact training record from LAMMPS dumps, or "
                       "--check committed records (checksums and label means, no LAMMPS)")
    p.add_argument("dumps", nargs="*", help="LAMMPS text dumps with id type q xu yu zu (.gz ok): "
                   "one trajectory each of the same system")
    what = p.add_mutually_exclusive_group()  # build one record, or check the committed ones
    what.add_argument("--check", nargs="*", metavar="DIR", help="verify the records listed in DIR/manifest.json "
                   "(default: every training/data/*/)")
    p.add_argument("--types", nargs="+", metavar="SPECIES", help="species name (or NULL) per atom type")
    p.add_argument("--timestep-fs", type=positive, help="MD timestep in fs")
    p.add_argument("--temperature-k", type=positive, help="the thermostat's target temperature in K")
    p.add_argument("--window-ps", type=float, nargs=2, metavar=("TAU1", "TAU2"),
                   help="slope-form window of the labels (default: chosen by the window rule)")
    p.add_argument("--radii", type=float, nargs="+", help="also labels truncated at these radii (A)")
    p.add_argument("--stride-ps", type=float, help="time between label origins (default: about "
                   "--max-origins origins in all)")
    p.add_argument("--max-origins", type=int, default=100, help="origins to store when no stride is given")
    p.add_argument("--molecules", action="store_true",
                   help="molecular ions from the dump's mol column: each atom of a named type is an ion's "
                   "centre and carries its molecule's total charge (the ion's other atoms: NULL)")
    what.add_argument("--out", help="record to write (.npz)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("data-card", help="write the data card (Markdown + plot) of a generated grid")
    p.add_argument("--grid", default="training/grid.json")
    p.add_argument("--table", default="training/systems.json")
    p.add_argument("--out", default="training/DATA_CARD.md")
    p.add_argument("--plot", default="training/data_card.png")
    p.set_defaults(func=_cmd_data_card)
