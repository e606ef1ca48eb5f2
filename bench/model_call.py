"""Benchmark: time per forward call of the message-passing model, the current
forward (filters shared between edges of equal r, heads as one product) against
the per-edge forward it replaced (the reference copy in
tests/test_message_passing_equivalence.py), same weights, same process, calls
interleaved.

The model is the UNTRAINED network of make_untrained_model (3 interaction
layers, 64 features, 10 Å cutoff, float32, random weights). Systems:

- periodic: 4000 ions (2000 cations + 2000 anions, 1 M) at random positions at
  least 3 Å apart (random sequential addition) in a 126 Å cubic box, every edge
  of ASE's neighbor_list ('ijD', both directions of every pair);
- rank_view (--rank-view): what one of 8 ranks of that system sees: local ions
  in a 63 Å cube, ghosts up to 30 Å around it, edges from local ions and ghosts
  up to 20 Å out (the rest are neighbors only), so later layers use fewer edges.

    .venv/bin/python bench/model_call.py [--repeats 30] [--rank-view] [--no-mallopt] [--out FILE]

One thread (torch.set_num_threads(1)). Like fix localcond (tune_malloc in
plugin/malloc_tuning.cpp), glibc's mmap threshold is raised first so the
model's large temporaries are reused rather than page-faulted in at every call
(--no-mallopt leaves malloc as is). Reports per-call wall time and thread CPU
time (less sensitive to other processes on a busy machine), medians of the
repeats, and the largest output difference. Writes JSON (machine, commit,
settings, timings) to bench/results/model_call.json by default.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

from localcond.model.message_passing import _equal_r_representatives, make_untrained_model  # noqa: E402
from test_message_passing_equivalence import ReferenceMessagePassing  # noqa: E402

import fix_overhead  # noqa: E402  (machine facts and commit, shared by the benchmarks)
from fix_overhead import commit  # noqa: E402

BOX, N_IONS, CUTOFF, MIN_DISTANCE = 126.0, 4000, 10.0, 3.0


def machine() -> dict:
    return {**fix_overhead.machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def tune_malloc() -> bool:
    """What fix localcond does: keep freed blocks up to 1 GiB in the heap."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def positions(seed: int = 0) -> np.ndarray:
    """N_IONS uniform random positions in the box, at least MIN_DISTANCE apart
    (minimum image), by random sequential addition."""
    rng = np.random.default_rng(seed)
    placed = np.empty((N_IONS, 3))
    n = 0
    while n < N_IONS:
        trial = rng.uniform(0.0, BOX, 3)
        d = placed[:n] - trial
        d -= BOX * np.round(d / BOX)
        if n == 0 or np.einsum("ij,ij->i", d, d).min() >= MIN_DISTANCE ** 2:
            placed[n] = trial
            n += 1
    return placed


def periodic(pos: np.ndarray, species: np.ndarray):
    atoms = Atoms(positions=pos, cell=[BOX] * 3, pbc=True)
    i, j, d = neighbor_list("ijD", atoms, CUTOFF, self_interaction=False)
    return species, np.stack([i, j]), d, len(pos)


def rank_view(pos: np.ndarray, species: np.ndarray, n_layers: int = 3):
    side = BOX / 2
    shifts = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3) * BOX
    images = (pos[None] + shifts[:, None]).reshape(-1, 3)
    image_species = np.tile(species, len(shifts))
    outside = np.max(np.maximum(-images, images - side), axis=1)  # 0 < local cube
    keep = outside <= n_layers * CUTOFF
    images, image_species, outside = images[keep], image_species[keep], outside[keep]
    order = np.argsort(outside > 0, kind="stable")  # local nodes first
    images, image_species, outside = images[order], image_species[order], outside[order]
    i, j, d = neighbor_list("ijD", Atoms(positions=images, pbc=False), CUTOFF,
                            self_interaction=False)
    centers = outside[i] <= (n_layers - 1) * CUTOFF
    return image_species, np.stack([i[centers], j[centers]]), d[centers], int(np.sum(outside <= 0))


def time_case(name: str, graph, models: dict, repeats: int, warmup: int) -> dict:
    species, edge_index, edge_vec, n_local = graph
    inputs = (torch.as_tensor(species, dtype=torch.int64), torch.as_tensor(edge_index, dtype=torch.int64),
              torch.as_tensor(edge_vec, dtype=torch.float64).to(torch.float32), int(n_local))
    r = torch.linalg.vector_norm(inputs[2], dim=1)
    with torch.inference_mode():
        outputs = {k: m(*inputs) for k, m in models.items()}
        wall = {k: [] for k in models}
        cpu = {k: [] for k in models}
        for _ in range(warmup):
            for m in models.values():
                m(*inputs)
        for _ in range(repeats):
            for k, m in models.items():
                c0, w0 = time.thread_time(), time.perf_counter()
                m(*inputs)
                wall[k].append((time.perf_counter() - w0) * 1e3)
                cpu[k].append((time.thread_time() - c0) * 1e3)
        matching = []
        for _ in range(repeats):
            c0 = time.thread_time()
            reps, _ = _equal_r_representatives(r)
            matching.append((time.thread_time() - c0) * 1e3)
    diff = (outputs["new"] - outputs["old"]).abs().max().item()
    scale = outputs["old"].abs().max().item()
    result = {
        "case": name, "nodes": int(len(species)), "outputs": int(n_local),
        "edges": int(edge_index.shape[1]), "distinct_r_filters": int(len(reps)),
        "max_abs_diff": diff, "max_rel_diff": diff / scale if scale else 0.0,
        "matching_cpu_ms_median": round(statistics.median(matching), 3),
    }
    for k in models:
        result[f"{k}_wall_ms_median"] = round(statistics.median(wall[k]), 2)
        result[f"{k}_cpu_ms_median"] = round(statistics.median(cpu[k]), 2)
    result["new_over_old_cpu"] = round(result["new_cpu_ms_median"] / result["old_cpu_ms_median"], 3)
    result["new_over_old_wall"] = round(result["new_wall_ms_median"] / result["old_wall_ms_median"], 3)
    result["runs_ms"] = {k: {"wall": [round(x, 2) for x in wall[k]], "cpu": [round(x, 2) for x in cpu[k]]}
                         for k in models}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank-view", action="store_true", help="also time one rank's view")
    parser.add_argument("--no-mallopt", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_call.json")
    args = parser.parse_args()

    torch.set_num_threads(1)
    mallopt = False if args.no_mallopt else tune_malloc()
    new, metadata = make_untrained_model(["cation", "anion"], [1.0, -1.0], cutoff=CUTOFF,
                                         n_layers=3, n_features=64)
    old = ReferenceMessagePassing(2, CUTOFF, 3, 64)
    old.load_state_dict(new.state_dict())
    models = {"old": old.eval(), "new": new.eval()}

    pos = positions()
    species = np.repeat([0, 1], N_IONS // 2)
    cases = [("periodic", periodic(pos, species))]
    if args.rank_view:
        cases.append(("rank_view", rank_view(pos, species)))
    load_before = os.getloadavg()
    results = [time_case(name, graph, models, args.repeats, args.warmup) for name, graph in cases]
    report = {
        "benchmark": "model_call",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "command": "python bench/model_call.py " + " ".join(sys.argv[1:]),
        "model": metadata.description + ", float32",
        "old": "per-edge forward (ReferenceMessagePassing in tests/test_message_passing_equivalence.py)",
        "new": "localcond.model.message_passing.MessagePassingConductivity",
        "system": (f"{N_IONS} ions (half cations, half anions), random positions >= {MIN_DISTANCE} A "
                   f"apart in a {BOX} A cubic box, cutoff {CUTOFF} A, edges from ase neighbor_list 'ijD'"),
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "threads": 1,
                     "mallopt": mallopt},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(f"{r['case']}: {r['edges']} edges, {r['distinct_r_filters']} filter rows; "
              f"old {r['old_cpu_ms_median']} ms, new {r['new_cpu_ms_median']} ms CPU "
              f"(wall {r['old_wall_ms_median']} / {r['new_wall_ms_median']} ms), "
              f"matching {r['matching_cpu_ms_median']} ms, max rel diff {r['max_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
