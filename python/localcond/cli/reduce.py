"""``localcond reduce FILES… --out DIR``: reducer files of many runs (LAMMPS fix
``file``, ASE observer) grouped by system, combined, summarised and plotted.
Under ``mpirun -np k`` the files are split over the ranks and the partial
combinations gathered on rank 0, which writes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from localcond.cli import positive
from localcond.errors import LocalcondError
from localcond.io.files import output_directory


def _world() -> Any:
    """MPI_COMM_WORLD when started by an MPI launcher with more than one rank, else None."""
    size = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE")
    if not size or int(size) < 2:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def reduce_files(paths: list[str], out_dir: str | Path, progress: bool = False, comm: Any = None,
                 dump_settings: dict[str, Any] | None = None,
                 reference: list[float] | None = None) -> Path | None:
    """Combine, summarise and plot; returns the summary path on the writing rank (rank 0).
    ``reference``: [Λ] or [Λ, error] in S cm² mol⁻¹ that the user trusts (a long run, an
    experiment), drawn on the convergence figures."""
    from localcond import __version__
    from localcond.postrun.runs import group_runs, summarize
    from localcond.postrun.figures import write_figures

    if not paths:
        raise LocalcondError("no reducer files given")
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    problem, systems = None, []
    try:
        systems = group_runs(paths[rank::size], progress=progress and rank == 0, dump_settings=dump_settings)
    except (LocalcondError, OSError, ValueError) as exc:
        problem = str(exc)
    if comm is not None:
        problems = [p for p in comm.allgather(problem) if p]
        if problems:
            raise LocalcondError(problems[0])
        parts = comm.gather(systems, root=0)
        if rank != 0:
            return None
        merged: dict[str, Any] = {}
        for part in parts:
            for system in part:
                if system.key in merged:
                    merged[system.key].absorb(system)
                else:
                    merged[system.key] = system
        systems = list(merged.values())
    elif problem:
        raise LocalcondError(problem)
    summaries = sorted((summarize(s) for s in systems), key=lambda s: s["system"])
    report = {"systems": summaries, "files": len(paths), "ranks": size, "localcond_version": __version__,
              "reference": _reference(reference),
              "command": " ".join(["localcond", "reduce", *sys.argv[2:]]) if sys.argv[1:2] == ["reduce"] else None}
    # everything is written to a scratch directory first, then moved in: nothing partial
    out_dir = Path(out_dir)
    with output_directory(out_dir, f"the reduction to '{out_dir}'"):
        scratch = Path(tempfile.mkdtemp(prefix=".reduce-", dir=out_dir))
        try:
            (scratch / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
            figures = write_figures(summaries, scratch, report["reference"])
            for path in [scratch / "summary.json", *figures]:
                os.replace(path, out_dir / path.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return out_dir / "summary.json"


def _reference(values: list[float] | None) -> dict[str, float | None] | None:
    if not values:
        return None
    if len(values) > 2 or (len(values) == 2 and values[1] < 0):
        raise LocalcondError(f"--reference takes a value and optionally its error (>= 0), got {values}")
    return {"value": values[0], "stderr": values[1] if len(values) == 2 else None}


def _cmd_reduce(args: argparse.Namespace) -> int:
    comm = _world()
    dump_settings = None
    if args.types:
        if args.timestep_fs is None:
            raise LocalcondError("reducing LAMMPS dumps needs --timestep-fs (the MD timestep in fs)")
        options: dict[str, Any] = {}
        if args.hist:
            options["hist"] = args.hist
        if args.tcorr:
            options["tcorr"] = args.tcorr
        if args.eh:
            options["eh"] = args.eh
        dump_settings = {"types": [None if t.upper() == "NULL" else t for t in args.types],
                         "timestep_fs": args.timestep_fs, "options": options, "column": args.column}
    path = reduce_files(args.files, args.out, progress=sys.stderr.isatty(), comm=comm, dump_settings=dump_settings,
                        reference=args.reference)
    if path is None:
        return 0
    report = json.loads(path.read_text())
    for s in report["systems"]:
        pred = s["lambda_pred"]
        eh = s.get("lambda_eh")
        eh_text = ""
        if eh is not None and eh["value"] is not None:
            lo, hi = eh["tau_window_ps"]
            eh_text = (f", Lambda_EH(window {lo:g}-{hi:g} ps) = {eh['value']:.4g} +- "
                       f"{eh['stderr'] if eh['stderr'] is not None else float('nan'):.2g}")
        elif eh is not None:
            eh_text = ", Lambda_EH: " + eh["note"]
        model_text = (f" (statistical) +- {pred['model_uncertainty']:.2g} (model)"
                      if pred.get("model_uncertainty") is not None else "")
        print(f"{s['system']}: {s['replicas']} file(s), {s['evaluations']} evaluations, Lambda_pred = "
              f"{pred['value']:.4g} +- {pred['stderr'] or float('nan'):.2g}{model_text} S cm^2/mol{eh_text}")
    print(f"wrote {path} and figures in {path.parent}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reduce", help="combine reducer files of many runs per system; summary.json and figures")
    p.add_argument("files", nargs="+", help="PREFIX.reduce.npz files (LAMMPS fix localcond 'file', ASE "
                   "observer), or LAMMPS text dumps with per-atom lambda (dump custom ... id type q f_ID)")
    p.add_argument("--out", required=True, help="output directory (summary.json, PNG figures)")
    p.add_argument("--reference", type=float, nargs="+", metavar="LAMBDA",
                   help="a molar conductivity you trust (S cm^2/mol), optionally with its error: drawn "
                   "on the convergence figures")
    dumps = p.add_argument_group("LAMMPS dumps (instead of reducer files)")
    dumps.add_argument("--types", nargs="+", metavar="SPECIES", help="species name (or NULL) per atom type")
    dumps.add_argument("--timestep-fs", type=positive, help="MD timestep in fs")
    dumps.add_argument("--column", help="the per-atom lambda column (default: the first f_, c_ or v_ column)")
    dumps.add_argument("--hist", type=float, nargs=3, metavar=("LO", "HI", "NBINS"), help="histogram of lambda")
    dumps.add_argument("--tcorr", type=int, metavar="NLAGS", help="time autocorrelation over NLAGS frames")
    dumps.add_argument("--eh", type=float, nargs=3, metavar=("NLAGS", "BLOCK", "TEMP"),
                       help="Einstein-Helfand over NLAGS frames (needs xu yu zu, or x y z ix iy iz), blocks of BLOCK origins, T in K")
    p.set_defaults(func=_cmd_reduce)
