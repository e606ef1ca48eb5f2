"""``localcond plugin-path``, ``reference-model``, ``info``, ``predict``: the plugin and model files."""

from __future__ import annotations

import argparse
import sys

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
    from localcond.engine.plugin import plugin_dir, plugin_file

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


def _cmd_default_model(args: argparse.Namespace) -> int:
    import json

    from localcond.model.default import card, model_path

    if args.card:
        print(json.dumps(card(), indent=1))
    else:
        print(model_path())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from localcond.model.contract import read_metadata

    md = read_metadata(args.model)
    if args.json:
        print(md.to_json())
        return 0
    training = md.training
    lines = [
        f"{args.model}: {md.kind} ({md.purpose}), contract v{md.contract_version}, {md.dtype}",
        f"  species  {', '.join(f'{s} ({q:+g} e)' for s, q in zip(md.species, md.charges))}",
        f"  {md.reach()} (in LAMMPS: comm_modify cutoff of at least {md.receptive_field:g} A plus the run's "
        f"neighbor skin, {md.receptive_field + 2:g} with skin 2)",
        f"  trained  {md.trained}" + (f": mode {training.get('mode')}, label {training.get('label')}, "
                                     f"{len(training.get('members', []))} ensemble member(s), "
                                     f"{len(md.training_systems)} training system(s)" if md.trained else ""),
        f"  labels   temperature {md.temperature_k} K, tau_lambda {md.label_tau_ps} ps",
        "  validated " + (", ".join(k for k, v in md.validation.items() if isinstance(v, dict) and v.get("validated"))
                          or "nothing per ion or per species (only the system means, see the model's card)"),
        f"  {md.description}",
        "  (--json prints every metadata field)",
    ]
    print("\n".join(lines))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from localcond.engine.predict import predict_dump, write_prediction

    types = [None if t.upper() == "NULL" else t for t in args.types]
    prediction = predict_dump(args.model, args.dump, types, progress=sys.stderr.isatty(), molecules=args.molecules)
    prefix = args.out or str(Path(args.dump).with_suffix("")) + ".localcond"
    files = write_prediction(prediction, prefix, args.model, args.dump, types)
    mean = prediction.frame_mean.mean()
    print(
        f"{len(prediction.timesteps)} frames, {int(prediction.evaluated.sum())} ions; "
        f"mean lambda over frames {mean:.6g} S cm^2/mol; wrote {', '.join(map(str, files))}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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

    p = sub.add_parser("default-model", help="print the path of the shipped default model")
    p.add_argument("--card", action="store_true",
                   help="print how it was made and its scores (JSON) instead")
    p.set_defaults(func=_cmd_default_model)

    p = sub.add_parser("info", help="summarise a model file's metadata (--json: all of it)")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print every metadata field as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("predict", help="evaluate a model on every frame of a LAMMPS text dump")
    p.add_argument("model")
    p.add_argument("dump", help="LAMMPS text dump with id type and x y z or xu yu zu (.gz ok)")
    p.add_argument("--types", nargs="+", required=True, metavar="SPECIES",
                   help="species name (or NULL) for each atom type, in type order")
    p.add_argument("--out", help="output prefix (default: DUMP without suffix + .localcond)")
    p.add_argument("--molecules", action="store_true",
                   help="molecular ions, from the dump's mol column: each atom of a mapped type is an ion's "
                   "centre and carries its molecule's total charge (the other atoms: NULL)")
    p.set_defaults(func=_cmd_predict)
