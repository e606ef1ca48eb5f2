#!/usr/bin/env bash
# The main job on shipped defaults: sets up .venv (deps + plugin build) if needed,
# runs the training grid's own model electrolyte (lammps_inputs/electrolyte) at a
# state point the default model never saw (0.6 mol/L, eps 14: held-out system
# c0.600_e14_r1 of ground truth v2) for 100 ps of equilibration and 40 ps with
# fix localcond, then prints Lambda_pred from those 40 ps beside the grid's
# long-run Lambda for the same state, and checks the fix's per-atom values
# against an independent offline evaluation of the dumped frames.
#
#   bash scripts/run_demo.sh [extra lmp arguments, e.g. -var prod 50000]
#
# Outputs in runs/demo/: log.lammps, demo.lc.dump (per-atom lambda),
# demo.reduce.npz / demo.summary.json (the fix's statistics), reduce/
# (localcond reduce: summary.json and figures), demo.localcond.npz (offline).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
MODEL="${LOCALCOND_MODEL:-$("$VENV/bin/localcond" default-model)}"
SYSTEM=c0.600_e14_r1
RUN="$ROOT/runs/demo"
mkdir -p "$RUN"
cd "$RUN"
echo "[demo] LAMMPS: model electrolyte at 0.6 mol/L, eps 14, fix localcond with $MODEL; output in $RUN"
"$VENV/bin/lmp" -in "$ROOT/lammps_inputs/electrolyte/in.electrolyte" -log log.lammps -screen none \
    -var conc 0.6 -var eps 14 -var dt 4.0 -var seed 2718 -var equil 25000 -var prod 10000 \
    -var model "$MODEL" -var out demo "$@"
echo "[demo] localcond reduce: summary and figures in $RUN/reduce (reference: the grid's long-run Lambda)"
REFERENCE=$("$VENV/bin/python" -c 'import json, sys
rows = {r["system"]: r for r in json.load(open(sys.argv[1]))["systems"]}
lam = rows[sys.argv[2]]["molar_conductivity"] if sys.argv[2] in rows else None
print("--reference", lam["value"], lam["total_error"]) if lam else None' "$ROOT/training/systems.json" "$SYSTEM")
"$VENV/bin/localcond" reduce demo.reduce.npz --out reduce $REFERENCE
echo "[demo] offline check: localcond predict on the dumped frames"
"$VENV/bin/localcond" predict "$MODEL" demo.lc.dump --types cation anion --out demo.localcond
"$VENV/bin/python" - "$ROOT/training/systems.json" "$SYSTEM" <<'PY'
import json, sys
import numpy as np
from localcond.io.lammps_dump import read_dump
offline = np.load("demo.localcond.npz")
worst = 0.0
for k, frame in enumerate(read_dump("demo.lc.dump")):
    fix = frame.columns["f_lc"][np.argsort(frame.ids)]
    worst = max(worst, np.max(np.abs(fix - offline["lambda"][k])) / np.abs(offline["lambda"][k]).max())
print(f"[demo] fix vs offline evaluation: largest difference {worst:.2e} of the largest |lambda| "
      "(the dump keeps 10 significant digits)")
summary = json.load(open("demo.summary.json"))
pred, eh = summary["lambda_pred"], summary["einstein_helfand"]
n = summary["evaluations"]
print(f"[demo] from this run's {n} evaluations (S cm^2/mol):")
print(f"         Lambda_pred (default model)      {pred['value']:8.1f} +- {pred['stderr'] or float('nan'):.1f}")
window = json.load(open("reduce/summary.json"))["systems"][0]["lambda_eh"]
if window["value"] is not None:
    lo, hi = window["tau_window_ps"]
    print(f"         Lambda_EH, window {lo:g}-{hi:g} ps       {window['value']:8.1f} +- {window['stderr']:.1f}  "
          "(the same run's dynamics, without the model; localcond reduce's diffusive window)")
else:
    print(f"         Lambda_EH: {window['note']}")
table, system = sys.argv[1], sys.argv[2]
rows = {r["system"]: r for r in json.load(open(table))["systems"]}
row = rows.get(system)
if row is None:
    print(f"[demo] {system}'s long-run Lambda is not in {table} yet (ground truth v2 still generating)")
else:
    lam = row["molar_conductivity"]
    w = row["tau_window_ps"]
    print(f"         grid's long-run Lambda ({row['production_ps'] / 1000:g} ns, tau {w[0]:g}-{w[1]:g} ps) "
          f"{lam['value']:8.1f} +- {lam['total_error']:.1f}   ({system}, training/DATA_CARD.md)")
raise SystemExit(0 if worst < 1e-6 else 1)
PY
