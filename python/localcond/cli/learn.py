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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a local-conductivity model from training records")
    p.add_argument("config", help="training configuration (JSON), see localcond.campaign.learn.train")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="a model's Lambda_pred beside Lambda for every system of "
                       "a set of training records")
    p.add_argument("model")
    p.add_argument("--records", nargs="+", default=["training/data/*/*.npz"],
                   help="record files or glob patterns (default: training/data/*/*.npz)")
    p.add_argument("--json", required=True, help="output (JSON)")
    p.add_argument("--plot", help="parity plot (PNG; default: the JSON path with .png)")
    p.set_defaults(func=_cmd_evaluate)
