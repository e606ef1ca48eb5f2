"""``localcond train`` and ``evaluate``: learned models."""

from __future__ import annotations

import argparse


def _cmd_train(args: argparse.Namespace) -> int:
    from localcond.campaign.learn.train import train

    path = train(args.config)
    print(f"wrote {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from localcond.io.files import write_json
    from localcond.campaign.learn.evaluate import evaluate, parity_plot
    from localcond.campaign.learn.train import record_paths

    long_lag = None
    if args.long_lag_errors:
        from localcond.io.files import read_json

        table = read_json(args.long_lag_errors, "replica table")
        long_lag = {r["system"]: r["long_lag_check"]["total_error"] for r in table["systems"]
                    if r.get("long_lag_check", {}).get("tested")}
    grids = None
    if args.grids:
        from localcond.campaign.grid import load_grid

        grids = [load_grid(g) for g in args.grids]
    result = evaluate(args.model, record_paths(args.records), long_lag, grids)
    path = write_json(args.json, result)
    plot = parity_plot(result, args.plot or str(path.with_suffix(".png")))
    for row in result["systems"]:
        p, t = row["lambda_pred"], row["lambda"]
        print(f"{row['system']:16s} {row.get('held_out_kind', row['role']):13s} Lambda_pred = "
              f"{p['value']:8.4g} +- {p['stderr']:.2g} (spread {p['ensemble_spread']:.2g})  Lambda = "
              f"{t['value']:8.4g} +- {t['total_error']:.2g}  z = {row['z']:+.1f}")
    if args.dense:
        from localcond.campaign.learn.field_check import calibration_plot, check_field, share_plot
        from localcond.io.files import read_json

        shares = None
        if args.shares:
            from localcond.campaign.learn.field_fit import pooled_share

            tables = [{r["system"]: r for r in read_json(t, "table")["systems"]} for t in args.shares]
            shares = {}
            for name in {n for t in tables for n in t}:
                value, error = pooled_share(*(t.get(name) for t in tables))
                if value is not None:
                    shares[name] = {"value": value, "stderr": error, "runs": sum(name in t for t in tables),
                                    "definition": "the cations' share of Lambda_EH (1 - the anions'), inverse-"
                                                  "variance mean over the tables given (independent runs)"}
        roles = {r["system"]: r["role"] for r in result["systems"]}
        result["field"] = check_field(args.model, record_paths(args.dense), args.tau_lambda_ps, shares, roles)
        path = write_json(args.json, result)
        figure = calibration_plot(result["field"], path.with_name(path.stem + "_calibration.png"))
        shares_figure = share_plot(result["field"], path.with_name(path.stem + "_shares.png"))
        for row in result["field"]:
            c, s = row["calibration"], row["species_share"]
            lo, hi = c["label_window_ps"]
            print(f"{row['system']:16s} {row['role'] or '':8s} calibration on labels over {lo:g}-{hi:g} ps: slope "
                  f"{c['slope']:.2f} +- {c['slope_stderr']:.2f}, intercept {c['intercept']:.3g} +- "
                  f"{c['intercept_stderr']:.2g}; {s['species']} share of Lambda_pred {s['prediction']:.3f}"
                  + (f" against measured {s['measured']['value']:.3f} (z = {s['z']:+.1f})" if s.get("z") is not None
                     else ""))
        print(f"wrote {figure} and {shares_figure}")
    print(f"wrote {path} and {plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a local-conductivity model from training records")
    p.add_argument("config", help="training configuration (JSON), see localcond.campaign.learn.train")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="a model's Lambda_pred beside Lambda for every system of "
                       "a set of training records")
    p.add_argument("model")
    p.add_argument("--records", nargs="+", default=["training/data/implicit-v2/*.npz"],
                   help="record files or glob patterns (default: training/data/implicit-v2/*.npz)")
    p.add_argument("--json", required=True, help="output (JSON)")
    p.add_argument("--plot", help="parity plot (PNG; default: the JSON path with .png)")
    p.add_argument("--dense", nargs="+", metavar="RECORD",
                   help="dense-label records (localcond replicas) to check the per-ion field on: the "
                   "calibration of per-ion labels against lambda_i, per system, and a figure")
    p.add_argument("--tau-lambda-ps", type=float, default=5.0,
                   help="the labels are in the slope form over [TAU, 2 TAU] (default 5 ps: the window the "
                   "field is defined on, doc/design.md 1.6)")
    p.add_argument("--long-lag-errors", metavar="TABLE", help="replica table (training/replica_systems.json): "
                   "z against the errors that also cover long lags (its long_lag_check)")
    p.add_argument("--grids", nargs="+", metavar="GRID", help="the grid files the records came from "
                   "(training/grid.json training/grid_sizes.json): each system's ion sizes and masses, for the "
                   "size surrogate and the held-out classes (a mass-scaled system is a control)")
    p.add_argument("--shares", nargs="+", metavar="TABLE",
                   help="tables of independent runs (training/systems.json, training/replica_systems.json, the dense "
                   "set's table) whose measured species shares of Lambda_EH, pooled by inverse variance, the model's "
                   "shares are compared with")
    p.set_defaults(func=_cmd_evaluate)
