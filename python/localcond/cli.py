"""The ``localcond`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localcond.errors import LocalcondError


def _species_charge(text: str) -> tuple[str, float]:
    name, sep, charge = text.rpartition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:CHARGE, got {text!r}")
    try:
        return name, float(charge)
    except ValueError:
        raise argparse.ArgumentTypeError(f"charge in {text!r} is not a number") from None


def _cmd_plugin_path(args: argparse.Namespace) -> int:
    from localcond.plugin import plugin_dir, plugin_file

    plugin_file()  # fails clearly if the build is missing
    print(plugin_dir())
    return 0


def _cmd_reference_model(args: argparse.Namespace) -> int:
    from localcond.model.export import save_model
    from localcond.model.reference import make_reference_model

    if args.cutoff <= 0:
        raise LocalcondError(f"--cutoff must be positive, got {args.cutoff}")
    names = [n for n, _ in args.species]
    module, metadata = make_reference_model(names, [q for _, q in args.species], args.cutoff)
    path = save_model(module, metadata, args.out)
    print(f"wrote reference model {path} (species {', '.join(names)}, cutoff {args.cutoff:g} A)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from localcond.model.contract import read_metadata

    print(read_metadata(args.model).to_json())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from localcond.predict import predict_dump, write_prediction

    types = [None if t.upper() == "NULL" else t for t in args.types]
    prediction = predict_dump(args.model, args.dump, types, progress=sys.stderr.isatty())
    prefix = args.out or str(Path(args.dump).with_suffix("")) + ".localcond"
    files = write_prediction(prediction, prefix, args.model, args.dump, types)
    mean = prediction.frame_mean.mean()
    print(
        f"{len(prediction.timesteps)} frames, {int(prediction.evaluated.sum())} ions; "
        f"mean lambda over frames {mean:.6g} S cm^2/mol; wrote {', '.join(map(str, files))}"
    )
    return 0


def _cmd_conductivity(args: argparse.Namespace) -> int:
    from localcond.labels.conductivity import Settings, accumulate, analyse, write_json

    settings = Settings(
        timestep_fs=args.timestep_fs, temperature_k=args.temperature_k, tau_ps=args.tau_ps,
        tau_window_ps=tuple(args.tau_window_ps) if args.tau_window_ps else None,
        max_lag_ps=args.max_lag_ps, n_blocks=args.blocks, error=args.error,
        concentration=args.concentration, n_salt=args.n_salt, ion_types=_ion_types(args.types),
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


def _ion_types(names: Sequence[str] | None) -> tuple[int, ...] | None:
    """Atom types (1-based) whose entry in --types is not NULL; None without --types."""
    if not names:
        return None
    types = tuple(k + 1 for k, name in enumerate(names) if name.upper() != "NULL")
    if not types:
        raise LocalcondError("--types names no ion type (all NULL)")
    return types


def _cmd_labels(args: argparse.Namespace) -> int:
    from localcond.labels.per_ion import LabelSettings, label_files

    settings = LabelSettings(
        timestep_fs=args.timestep_fs, temperature_k=args.temperature_k, tau_ps=args.tau_ps,
        tau_window_ps=tuple(args.tau_window_ps) if args.tau_window_ps else None,
        radii=tuple(args.radii or ()), origin_stride=args.origin_stride, n_salt=args.n_salt,
    )
    for path in label_files(args.dumps, settings, args.out_dir):
        print(f"wrote {path}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from localcond.generate import generate

    if args.reanalyse:
        from localcond.generate import reanalyse

        results = reanalyse(args.grid, args.table, args.progress_dir, args.records_dir)
        print(f"{len(results)} systems reanalysed from {args.progress_dir}; table in {args.table}")
        return 0
    results = generate(args.grid, args.data_dir, args.table, args.progress_dir, args.records_dir,
                       only=args.only, jobs=args.jobs)
    print(f"{len(results)} systems done; table in {args.table}")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from localcond.dataset import build_from_dumps, check_directory, sha256, update_manifest

    if args.check is not None:
        directories = args.check or sorted(p.parent for p in Path("training/data").glob("*/manifest.json"))
        if not directories:
            raise LocalcondError("no manifest found under training/data/; give the directory to check")
        for directory in directories:
            rows = check_directory(directory)
            for row in rows:
                print(f"{directory}/{row['record']}: sha256 ok, {row['n_origins']} origins, mean label "
                      f"{row['mean_label']:.6g} = Lambda over the same origins {row['lambda_same_origins']:.6g}"
                      " S cm^2/mol")
            print(f"{directory}: {len(rows)} records verified")
        return 0
    if not args.dumps or not args.out or not args.types:
        raise LocalcondError("give DUMP... --types NAME... --timestep-fs DT --temperature-k T --out FILE.npz "
                             "(or --check [DIR...])")
    if args.timestep_fs is None or args.temperature_k is None:
        raise LocalcondError("--timestep-fs and --temperature-k are required to build a record")
    species = {k + 1: name for k, name in enumerate(args.types) if name.upper() != "NULL"}
    path, meta = build_from_dumps(
        args.dumps, species, args.timestep_fs, args.temperature_k, args.out,
        window_ps=tuple(args.window_ps) if args.window_ps else None, radii=tuple(args.radii or ()),
        stride_ps=args.stride_ps, max_origins=args.max_origins)
    update_manifest(path.parent, path, {"command": " ".join(["localcond", *sys.argv[1:]]),
                                        "system": meta["system"]})
    lam = meta["molar_conductivity"]
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {sha256(path)[:12]}…): Lambda = "
          f"{lam['value']:.4g} +- {lam['stderr']:.2g} S cm^2/mol over {meta['tau_window_ps'][0]:g}-"
          f"{meta['tau_window_ps'][1]:g} ps")
    for warning in meta["diffusive_warnings"]:
        print(f"localcond dataset: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from localcond.learn.train import train

    path = train(args.config)
    print(f"wrote {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from localcond.io.files import write_json
    from localcond.learn.evaluate import evaluate, parity_plot
    from localcond.learn.train import record_paths

    result = evaluate(args.model, record_paths(args.records))
    path = write_json(args.json, result)
    plot = parity_plot(result, args.plot or str(path.with_suffix(".png")))
    for row in result["systems"]:
        p, t = row["lambda_pred"], row["lambda"]
        print(f"{row['system']:16s} {row.get('held_out_kind', row['role']):13s} Lambda_pred = "
              f"{p['value']:8.4g} +- {p['stderr']:.2g} (spread {p['ensemble_spread']:.2g})  Lambda = "
              f"{t['value']:8.4g} +- {t['total_error']:.2g}  z = {row['z']:+.1f}")
    print(f"wrote {path} and {plot}")
    return 0


def _cmd_data_card(args: argparse.Namespace) -> int:
    from localcond.datacard import write_data_card

    path = write_data_card(args.grid, args.table, args.out, args.plot)
    print(f"wrote {path}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="localcond", description="Local molar conductivity of ions (LAMMPS plugin + Python)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugin-path", help="print the directory holding the LAMMPS plugin")
    p.set_defaults(func=_cmd_plugin_path)

    p = sub.add_parser(
        "reference-model",
        help="write the analytic reference model (for checking an installation)",
    )
    p.add_argument("out", help="output model file (.pt)")
    p.add_argument("--species", nargs="+", required=True, type=_species_charge,
                   metavar="NAME:CHARGE", help="species names and charges in e, e.g. Li:1 PF6:-1")
    p.add_argument("--cutoff", type=float, required=True, help="cutoff RC in Angstrom")
    p.set_defaults(func=_cmd_reference_model)

    p = sub.add_parser("info", help="print a model file's metadata (JSON)")
    p.add_argument("model")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("predict", help="evaluate a model on every frame of a LAMMPS text dump")
    p.add_argument("model")
    p.add_argument("dump", help="LAMMPS text dump with id type and x y z or xu yu zu (.gz ok)")
    p.add_argument("--types", nargs="+", required=True, metavar="SPECIES",
                   help="species name (or NULL) for each atom type, in type order")
    p.add_argument("--out", help="output prefix (default: DUMP without suffix + .localcond)")
    p.set_defaults(func=_cmd_predict)

    def trajectory_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dumps", nargs="+", help="LAMMPS text dumps with id type q xu yu zu (.gz ok)")
        p.add_argument("--timestep-fs", type=float, required=True, help="MD timestep in fs")
        p.add_argument("--temperature-k", type=float, required=True,
                       help="the thermostat's target temperature in K")
        p.add_argument("--n-salt", type=float, help="number of formula units (overrides --concentration)")

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
    p.add_argument("--types", nargs="+", metavar="NAME", help="one name (or NULL) per atom type: only "
                   "the non-NULL types are ions (default: every charged atom is an ion; use this when "
                   "a solvent carries partial charges)")
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
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("dataset", help="build a compact training record from LAMMPS dumps, or "
                       "--check committed records (checksums and label means, no LAMMPS)")
    p.add_argument("dumps", nargs="*", help="LAMMPS text dumps with id type q xu yu zu (.gz ok): "
                   "one trajectory each of the same system")
    p.add_argument("--check", nargs="*", metavar="DIR", help="verify the records listed in DIR/manifest.json "
                   "(default: every training/data/*/)")
    p.add_argument("--types", nargs="+", metavar="SPECIES", help="species name (or NULL) per atom type")
    p.add_argument("--timestep-fs", type=float, help="MD timestep in fs")
    p.add_argument("--temperature-k", type=float, help="the thermostat's target temperature in K")
    p.add_argument("--window-ps", type=float, nargs=2, metavar=("TAU1", "TAU2"),
                   help="slope-form window of the labels (default: chosen by the window rule)")
    p.add_argument("--radii", type=float, nargs="+", help="also labels truncated at these radii (A)")
    p.add_argument("--stride-ps", type=float, help="time between label origins (default: about "
                   "--max-origins origins in all)")
    p.add_argument("--max-origins", type=int, default=100, help="origins to store when no stride is given")
    p.add_argument("--out", help="record to write (.npz)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("train", help="train a local-conductivity model from training records")
    p.add_argument("config", help="training configuration (JSON), see localcond.learn.train")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="a model's Lambda_pred beside Lambda for every system of "
                       "a set of training records")
    p.add_argument("model")
    p.add_argument("--records", nargs="+", default=["training/data/*/*.npz"],
                   help="record files or glob patterns (default: training/data/*/*.npz)")
    p.add_argument("--json", required=True, help="output (JSON)")
    p.add_argument("--plot", help="parity plot (PNG; default: the JSON path with .png)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("data-card", help="write the data card (Markdown + plot) of a generated grid")
    p.add_argument("--grid", default="training/grid.json")
    p.add_argument("--table", default="training/systems.json")
    p.add_argument("--out", default="training/DATA_CARD.md")
    p.add_argument("--plot", default="training/data_card.png")
    p.set_defaults(func=_cmd_data_card)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (LocalcondError, FileNotFoundError) as exc:
        print(f"localcond {args.command}: error: {exc}", file=sys.stderr)
        return 2
