"""kinisi against our Λ after the sample-count correction, on fresh segments.

The data card's kinisi column was fitted before
``localcond.campaign.labels.kinisi_check`` corrected kinisi 2.1's count of independent
samples, so its fits that start at short lags are too wide and biased high.
The grid's trajectories are not kept, so they cannot be refitted. This script
runs one fresh segment of each system named (the grid's protocol: the grid's
input, 4 fs, frames every 1 ps, 200 ps of equilibration, then 2.5 ns; a new
seed). On each segment it reports:

- kinisi over the system's planned window, as the generator calls it (from t1
  to max(t2, 3 t1)), with and without the correction;
- our slope-form Λ over the same window from the same segment;

beside the grid's long-run Λ (training/systems.json). All Λ in S cm² mol⁻¹.

    PYTHONPATH=python .venv/bin/python training/kinisi_recheck.py [SYSTEM ...]

About 6 min of one core per system; dumps in runs/kinisi_recheck/ (not committed),
result in training/kinisi_recheck.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import localcond.campaign.labels.kinisi_check as kinisi_check
from localcond.io.lammps_command import lammps_command
from localcond.campaign.labels.conductivity import Settings, accumulate, analyse

ROOT = Path(__file__).resolve().parents[1]
TIMESTEP_FS = 4.0
TEMPERATURE_K = 298.0
SEGMENT_PS = 2500.0
EQUIL_PS = 200.0
SEED0 = 5200  # not a grid seed (those are 9-digit hashes)
# the systems whose kinisi fit started below 50 ps on the card (kinisi disagreed there)
DEFAULT = ["c0.750_e10_r1", "c1.000_e10_r1", "c0.600_e14_r1", "c0.750_e17_r1", "c2.000_e20_r1", "c0.300_e25_r1"]


def run_segment(row: dict, seed: int, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dump = directory / "seg.dump"
    if (directory / "done").exists():
        return dump
    steps = lambda ps: str(int(round(ps * 1000.0 / TIMESTEP_FS)))  # noqa: E731
    subprocess.run(lammps_command(ROOT / "lammps_inputs/electrolyte/in.electrolyte", {
        "conc": row["concentration_nominal_mol_per_l"], "eps": row["dielectric_constant"], "dt": TIMESTEP_FS,
        "seed": seed, "equil": steps(EQUIL_PS), "prod": steps(SEGMENT_PS), "every": steps(1.0), "out": "seg"}),
        cwd=directory, check=True)
    (directory / "done").write_text("")
    return dump


def kinisi_fit(dump: Path, t1: float, t_max: float, corrected: bool) -> dict:
    correction = kinisi_check._count_samples_over_whole_trajectory
    if not corrected:
        kinisi_check._count_samples_over_whole_trajectory = lambda *a, **k: None  # type: ignore[assignment]
    try:
        return kinisi_check.kinisi_molar_conductivity(dump, TIMESTEP_FS, TEMPERATURE_K, start_ps=t1,
                                                      max_lag_ps=t_max, lag_stride=2)
    finally:
        kinisi_check._count_samples_over_whole_trajectory = correction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("systems", nargs="*", default=DEFAULT)
    parser.add_argument("--out", type=Path, default=ROOT / "training/kinisi_recheck.json")
    args = parser.parse_args()
    rows = {r["system"]: r for r in json.loads((ROOT / "training/systems.json").read_text())["systems"]}
    results = []
    for k, name in enumerate(args.systems):
        row = rows[name]
        t1, t2 = row["tau_window_ps"]
        t_max = max(t2, 3 * t1)
        seed = SEED0 + k
        dump = run_segment(row, seed, ROOT / "runs/kinisi_recheck" / name)
        settings = Settings(timestep_fs=TIMESTEP_FS, temperature_k=TEMPERATURE_K, tau_window_ps=(t1, t2))
        ours = analyse(accumulate([dump], settings), settings)["molar_conductivity"]
        new, old = kinisi_fit(dump, t1, t_max, True), kinisi_fit(dump, t1, t_max, False)
        lam = row["molar_conductivity"]
        card = (row.get("kinisi") or {})
        result = {
            "system": name, "seed": seed, "segment_ps": SEGMENT_PS, "window_ps": [t1, t2], "kinisi_lags_ps": [t1, t_max],
            "ours_segment": {"value": ours["value"], "stderr": ours["stderr"]},
            "kinisi_corrected": {"value": new["value"], "stderr": new["stderr"]},
            "kinisi_uncorrected": {"value": old["value"], "stderr": old["stderr"]},
            "long_run": {"value": lam["value"], "total_error": lam["total_error"]},
            "card_kinisi": {"value": card.get("value"), "stderr": card.get("stderr")} if card else None,
            "z_corrected_vs_long_run": (new["value"] - lam["value"]) / (new["stderr"] ** 2 + lam["total_error"] ** 2) ** 0.5,
            "z_corrected_vs_segment": (new["value"] - ours["value"]) / (new["stderr"] ** 2 + ours["stderr"] ** 2) ** 0.5,
        }
        results.append(result)
        print(f"{name}: segment ours {ours['value']:.0f} +- {ours['stderr']:.0f}; kinisi corrected "
              f"{new['value']:.0f} +- {new['stderr']:.0f}, uncorrected {old['value']:.0f} +- {old['stderr']:.0f}; "
              f"long run {lam['value']:.0f} +- {lam['total_error']:.0f} "
              f"(z corrected vs long run {result['z_corrected_vs_long_run']:+.2f})", flush=True)
        args.out.write_text(json.dumps({"command": "PYTHONPATH=python .venv/bin/python training/kinisi_recheck.py",
                                        "systems": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
