"""Model throughput: ions per second per core for one forward call at 1k, 4k and
16k ions of the model electrolyte at 1 mol/L (cations and anions at random,
non-overlapping positions; edges within the model cutoff built beforehand with
ASE, not timed), one torch thread.

    .venv/bin/python bench/model_throughput.py [--model FILE.pt] [--repeats 7]

Without --model an untrained model of the family given by --family stands in
(same cost as a trained one). Writes JSON (machine, commit, model, per size:
median seconds per call, ions/s, edges) to bench/results/model_throughput.json
and says whether the cost is linear in the number of ions (time per ion at
16k within 25 % of that at 1k).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fix_overhead import commit, machine
from localcond.model.export import save_model
from localcond.model.families import make_model
from localcond.engine.neighbors import periodic_edges
from localcond.engine.runtime import load_model

ROOT = Path(__file__).resolve().parents[1]
IONS_PER_LITRE_BOX = 500 / (250 / (1.0 * 6.02214076e23) * 1e27)  # ions per Å³ at 1 M (2 ions per pair)


def random_electrolyte(n_ions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Positions (Å) with no two ions closer than 2.5 Å, species 0/1 alternating, box edge."""
    box = (n_ions / IONS_PER_LITRE_BOX) ** (1 / 3)
    rng = np.random.default_rng(seed)
    positions = rng.random((n_ions, 3)) * box
    for _ in range(50):  # push apart the few overlapping pairs
        i, j, _ = _pairs(positions, box, 2.5)
        if i.size == 0:
            break
        positions[i] = rng.random((i.size, 3)) * box
    return positions, np.arange(n_ions) % 2, box


def _pairs(positions, box, cutoff):
    edge_index, edge_vec = periodic_edges(positions, np.eye(3) * box, (True,) * 3, cutoff)
    keep = edge_index[0] < edge_index[1]
    return edge_index[0][keep], edge_index[1][keep], edge_vec[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model file (default: an untrained --family model)")
    parser.add_argument("--family", default="power-spectrum")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.model
    if path is None:
        module, metadata = make_model(args.family, ["cation", "anion"], [1.0, -1.0])
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"untrained-{args.family}.pt"
        save_model(module, metadata, path)
    model = load_model(path)
    rows = []
    for n in args.sizes:
        x, species, box = random_electrolyte(n)
        edge_index, edge_vec = periodic_edges(x, np.eye(3) * box, (True,) * 3, model.metadata.cutoff)
        inputs = (torch.as_tensor(species % len(model.metadata.species)), torch.as_tensor(edge_index),
                  torch.as_tensor(edge_vec, dtype=model.dtype), n)
        with torch.inference_mode():
            model.module(*inputs)  # warm-up (TorchScript profiling runs)
            model.module(*inputs)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model.module(*inputs)
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"ions": n, "edges": int(edge_index.shape[1]), "box_A": box, "median_s": median,
                     "min_s": min(times), "ions_per_s_per_core": n / median})
        print(f"{n:6d} ions, {edge_index.shape[1]:8d} edges: {median * 1e3:8.2f} ms per call, "
              f"{n / median:10.3g} ions/s/core", flush=True)
    per_ion = [r["median_s"] / r["ions"] for r in rows]
    result = {"benchmark": "model_throughput", "machine": machine(), "commit": commit(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "model": str(path) if args.model else f"untrained {args.family}",
              "model_kind": model.metadata.kind, "cutoff_A": model.metadata.cutoff, "sizes": rows,
              "linear_in_ions": bool(max(per_ion) <= 1.25 * min(per_ion)),
              "command": "python bench/model_throughput.py " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
