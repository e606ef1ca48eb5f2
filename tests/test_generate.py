"""localcond generate on a tiny grid: real LAMMPS segments, analysis, resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_grid(tmp_path):
    grid = json.loads((ROOT / "training" / "grid.json").read_text())
    grid.update(
        name="tiny", input=str(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte"),
        npairs=12, equilibration_ps=2.0, segment_ps=6.0, tau_ps=1.0, dump_every=50,
        train={"concentrations_mol_per_l": [1.0], "dielectric_constants": [20], "replicas": 1,
               "production_ps": 12.0},
        heldout=[],
        target_relative_error={}, max_production_ps={},
    )
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    return path


def generate(grid, tmp_path):
    """Relative --data-dir and --table, as a user types them."""
    return subprocess.run(
        [sys.executable, "-m", "localcond", "generate", str(grid), "--data-dir", "data",
         "--table", "systems.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_generate_runs_analyses_and_resumes(tiny_grid, tmp_path):
    proc = generate(tiny_grid, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    system = tmp_path / "data" / "tiny" / "c1.000_e20_r1"
    assert sorted(p.name for p in system.glob("*.done")) == ["seg000.done", "seg001.done"]
    table = json.loads((tmp_path / "systems.json").read_text())
    (row,) = table["systems"]
    assert row["system"] == "c1.000_e20_r1" and row["production_ps"] == 12.0
    assert row["molar_conductivity"]["value"] > 0 and row["nernst_einstein"]["value"] > 0
    assert abs(row["temperature_relative_deviation"]) < 0.2
    assert row["bjerrum_length_A"] == pytest.approx(560.6 / 20)

    # An interrupted second segment: its marker and summary are gone, a partial
    # file is left behind. The rerun repeats only that segment.
    first_dump = system / "seg000.dump"
    stamp = first_dump.stat().st_mtime_ns
    (system / "seg001.done").unlink()
    (system / "summary.json").unlink()
    (system / "part-seg001.dump").write_text("ITEM: TIMESTEP\n")
    (tmp_path / "systems.json").unlink()
    proc = generate(tiny_grid, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "segment 2/2 done" in proc.stdout and "segment 1/2" not in proc.stdout
    assert first_dump.stat().st_mtime_ns == stamp
    assert not list(system.glob("part-*"))

    # An error target the first segments miss: segments are added up to the maximum.
    grid = json.loads(tiny_grid.read_text())
    grid.update(target_relative_error={"train": 1e-6}, max_production_ps={"train": 18.0})
    tiny_grid.write_text(json.dumps(grid))
    (system / "summary.json").unlink()
    (tmp_path / "systems.json").unlink()
    proc = generate(tiny_grid, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "one more segment" in proc.stdout and "segment 3/3 done" in proc.stdout
    assert json.loads((system / "summary.json").read_text())["production_ps"] == 18.0

    # A new machine: no data directory, only the committed table.
    os.rename(tmp_path / "data", tmp_path / "old-data")
    proc = generate(tiny_grid, tmp_path)
    assert proc.returncode == 0
    assert "1 of 1 systems done, 0 to run" in proc.stdout
