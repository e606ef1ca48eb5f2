"""localcond generate on a tiny grid: real LAMMPS segments, the two-stage plan,
resume on a "new machine" from the committed progress alone, unique seeds."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from localcond.campaign.dataset import check_directory, read_record
from localcond.campaign.generate import run_order
from localcond.campaign.plan import trend_resolution
from localcond.campaign.grid import load_grid, seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_grid(tmp_path):
    grid = json.loads((ROOT / "training" / "grid.json").read_text())
    grid.update(
        name="tiny", input=str(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte"),
        npairs=20, equilibration_ps=2.0, segment_ps=40.0, dump_every=25,
        max_production_ps={"train": 200.0, "heldout": 200.0},
        labels={"radii_A": [6.0, 10.0], "max_origins": 20, "min_stride_ps": 1.0},
        train={"concentrations_mol_per_l": [1.0], "dielectric_constants": [20], "replicas": 1},
        heldout=[], reference_window_ps=[1.0, 4.0],
    )
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    return path


def generate(grid, cwd, *extra):
    """Relative directories, as a user types them."""
    return subprocess.run(
        [sys.executable, "-m", "localcond", "generate", str(grid), "--data-dir", "data",
         "--table", "systems.json", "--progress-dir", "progress", "--records-dir", "records", *extra],
        cwd=cwd, capture_output=True, text=True, timeout=300)


def test_two_stage_plan_record_and_resume_on_a_new_machine(tiny_grid, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    proc = generate(tiny_grid, a)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads((a / "systems.json").read_text())["systems"]
    plan = json.loads((a / "progress/tiny/c1.000_e20_r1/plan.json").read_text())
    # The pilot fixed window and length; the clamp to the maximum is said.
    assert row["tau_window_ps"] == plan["window_ps"]
    assert row["reference_window"]["tau_window_ps"] == [1.0, 4.0] and row["reference_window"]["value"] > 0
    n, p = plan["production_segments"], plan["pilot_segments"]
    assert p in (1, 2, 4)
    if p < 4:  # the pilot stopped early only with a window settled two octaves below its reach
        assert plan["pilot"]["window_passed"]
        assert 8 * plan["window_ps"][0] <= plan["pilot"]["longest_lag_ps"] + 1e-9
        assert trend_resolution(plan["pilot"]["windows"], plan["window_ps"], 8 * plan["window_ps"][0]) <= 0.07
    assert n == min(max(int(np.ceil(p * (plan["pilot"]["relative_error"] / 0.07) ** 2)), 4), 5)
    assert row["production_ps"] == 40.0 * n and row["pilot_ps"] == 40.0 * p
    assert row["seeds"] == [seed("tiny", "c1.000_e20_r1", k) for k in range(p + n)]
    lam = row["molar_conductivity"]
    assert lam["total_error"] == pytest.approx(np.hypot(lam["stderr"], lam["tau_systematic"]))
    # The record: label mean equals Λ over the same origins, and the pilot is not in it.
    (checked,) = check_directory(a / "records/tiny")
    record = read_record(a / "records/tiny/c1.000_e20_r1.npz")
    assert set(record["segment"].tolist()) == set(range(p, p + n))
    assert record["label_exact"].shape == (checked["n_origins"], 40)
    assert record["metadata"]["tau_window_ps"] == plan["window_ps"]

    # Interrupted after the pilot and one production segment, then a new machine:
    # no data directory, only the committed progress (as git would bring it).
    last = p + n - 1
    shutil.copytree(a / "progress", b / "progress")
    for k in range(p + 1, last + 1):
        (b / f"progress/tiny/c1.000_e20_r1/seg{k:03d}.npz").unlink()
    (b / f"progress/tiny/c1.000_e20_r1/seg{last:03d}.restart").unlink()
    shutil.copy(a / f"data/tiny/c1.000_e20_r1/seg{p:03d}.restart", b / "progress/tiny/c1.000_e20_r1/")
    proc = generate(tiny_grid, b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 resuming from committed progress" in proc.stdout
    assert "segment 0 done" not in proc.stdout and f"segment {p} done" not in proc.stdout
    assert f"segment {last} done" in proc.stdout
    (again,) = json.loads((b / "systems.json").read_text())["systems"]
    # Segments continue from the same restart files with the same seeds: identical.
    assert again["molar_conductivity"] == row["molar_conductivity"]
    assert again["curves"] == row["curves"]

    # Systems in the committed table count as done.
    proc = generate(tiny_grid, b)
    assert proc.returncode == 0 and "1 of 1 systems done, 0 to run" in proc.stdout

    # The analysis can be redone from the committed progress alone, identically.
    (b / "systems.json").unlink()
    proc = generate(tiny_grid, b, "--reanalyse")
    assert proc.returncode == 0 and "1 systems reanalysed" in proc.stdout, proc.stdout + proc.stderr
    (redone,) = json.loads((b / "systems.json").read_text())["systems"]
    assert redone["molar_conductivity"] == row["molar_conductivity"] and redone["halves"] == row["halves"]
    segs = [read_record(a / "records/tiny/c1.000_e20_r1.npz")]
    assert redone["record"]["n_origins"] == len(segs[0]["collective"])

    # A production segment analysed for another label window is refused, not merged.
    seg = b / f"progress/tiny/c1.000_e20_r1/seg{p:03d}.npz"
    data = dict(np.load(seg))
    meta = json.loads(str(data["meta"]))
    meta["label_window_frames"] = [1, 2]
    data["meta"] = json.dumps(meta)
    np.savez_compressed(seg, **data)
    proc = generate(tiny_grid, b, "--reanalyse")
    assert proc.returncode == 2
    assert f"segment {p}: labels for window [1, 2]" in proc.stderr + proc.stdout

    # A production that failed the diffusive check is replanned once: every segment so far
    # becomes the pilot, and a fresh production follows (the earlier ones are in no number).
    table = json.loads((a / "systems.json").read_text())
    table["systems"][0]["diffusive_check_passed"] = False
    (a / "systems.json").write_text(json.dumps(table))
    proc = generate(tiny_grid, a, "--replan-failed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replanned after its failed diffusive check" in proc.stdout
    replanned = json.loads((a / "progress/tiny/c1.000_e20_r1/plan.json").read_text())
    assert replanned["pilot_segments"] == p + n and replanned["replan_of"]["production_segments"] == n
    n2 = replanned["production_segments"]
    (row2,) = json.loads((a / "systems.json").read_text())["systems"]
    assert row2["seeds"] == [seed("tiny", "c1.000_e20_r1", k) for k in range(p + n + n2)]
    assert set(read_record(a / "records/tiny/c1.000_e20_r1.npz")["segment"].tolist()) == set(range(p + n, p + n + n2))
    # A second stage interrupted before its row was written (the table still holds the
    # failed first-stage row) resumes where it stopped, identically; it is not replanned again.
    (a / "systems.json").write_text(json.dumps(table))
    last2 = p + n + n2 - 1
    (a / f"progress/tiny/c1.000_e20_r1/seg{last2:03d}.npz").unlink()
    proc = generate(tiny_grid, a, "--replan-failed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replanned after" not in proc.stdout and f"segment {last2} done" in proc.stdout
    assert f"segment {last2 - 1} done" not in proc.stdout
    (resumed,) = json.loads((a / "systems.json").read_text())["systems"]
    assert resumed["molar_conductivity"] == row2["molar_conductivity"]
    # once only
    table = json.loads((a / "systems.json").read_text())
    table["systems"][0]["diffusive_check_passed"] = False
    (a / "systems.json").write_text(json.dumps(table))
    proc = generate(tiny_grid, a, "--replan-failed")
    assert proc.returncode == 0 and "1 of 1 systems done, 0 to run" in proc.stdout, proc.stdout + proc.stderr


def test_seeds_are_unique_across_the_grid():
    """Every segment of every system (up to its role's maximum) gets its own seed, and
    so do the two seeds the input derives from it (+7919 and +104729)."""
    grid = load_grid(ROOT / "training" / "grid.json")
    seen = {}
    for system in grid.systems:
        longest = int(grid.max_production_ps[system.role] // grid.segment_ps) + grid.max_pilot_segments
        for k in range(longest):
            s = seed(grid.name, system.name, k)
            assert 1 <= s and s + 104729 < 2**31
            for derived in (s, s + 7919, s + 104729):
                assert derived not in seen, (system.name, k, seen.get(derived))
                seen[derived] = (system.name, k)
    assert len(seen) == 3 * sum(int(grid.max_production_ps[s.role] // grid.segment_ps)
                                + grid.max_pilot_segments for s in grid.systems)


def test_trend_resolution_by_hand():
    """Window [4, 8] (Λ 100 ± 3) against longer windows up to start 16: the largest
    relative error of a difference, hypot(3, 4) / 100 = 5 % (the window at 32 is
    beyond the reach and does not count)."""
    rows = [{"tau_window_ps": [2.0, 4.0], "value": 120.0, "stderr": 1.0},
            {"tau_window_ps": [4.0, 8.0], "value": 100.0, "stderr": 3.0},
            {"tau_window_ps": [8.0, 16.0], "value": 98.0, "stderr": 2.0},
            {"tau_window_ps": [16.0, 32.0], "value": 97.0, "stderr": 4.0},
            {"tau_window_ps": [32.0, 64.0], "value": 90.0, "stderr": 40.0}]
    assert trend_resolution(rows, [4.0, 8.0], 16.0) == pytest.approx(0.05)
    assert trend_resolution(rows, [4.0, 8.0], 32.0) == pytest.approx(np.hypot(3, 40) / 100)
    assert trend_resolution(rows, [32.0, 64.0], 256.0) == float("inf")


def test_run_order_resuming_then_longest_role_first():
    """Four systems of the real grid: the one with committed segments runs first, then
    held-out ones (longest allowed production), then training ones, grid order within."""
    grid = load_grid(ROOT / "training" / "grid.json")
    train = [s for s in grid.systems if s.role == "train"]
    heldout = [s for s in grid.systems if s.role == "heldout"]
    assert grid.max_production_ps["heldout"] > grid.max_production_ps["train"]
    todo = [train[0], train[1], heldout[1], heldout[0]]
    order = run_order(grid, todo, {train[1].name: 3, train[0].name: 0})
    assert [s.name for s in order] == [train[1].name, heldout[0].name, heldout[1].name, train[0].name]


def test_a_variant_with_two_cation_sizes_and_heavier_ions(tiny_grid, tmp_path):
    """A grid variant reaches the input as its variables: half the cations a second type of
    another size (both one model species in the record), every mass scaled; its name says so."""
    grid = json.loads(tiny_grid.read_text())
    grid.update(name="tinyvar", train={"concentrations_mol_per_l": [], "dielectric_constants": []},
                max_production_ps={"train": 80.0, "heldout": 80.0}, min_production_segments=1, max_pilot_segments=1,
                variants=[{"conc": 1.0, "eps": 20, "role": "train", "sigma_cation": 2.5, "sigma_cation2": 4.5,
                           "fraction2": 0.5, "mass_scale": 2.0}])
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    (system,) = load_grid(path).systems
    assert system.name == "c1.000_e20_s2.5x4.5f0.5_m2_r1"
    proc = generate(path, tmp_path)
    log = next((tmp_path / "data").rglob("seg000.log")).read_text()
    # the input's own echo of the coefficients: Lorentz means of the sizes, masses x2
    assert "pair_coeff 1 3 0.5 3.5 " in log and "pair_coeff 2 3 0.5 4.5 " in log
    assert "mass            1 40" in log and "mass 3 40" in log and "mass            2 120" in log
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = read_record(next((tmp_path / "records").rglob("*.npz")))
    assert list(record["species"]) == ["cation", "anion"]
    assert np.bincount(record["species_index"]).tolist() == [20, 20]  # 10 + 10 cations of two sizes
    assert record["metadata"]["species_charges"] == [1.0, -1.0]
    # the table keeps a share of Lambda_EH per atom type; they sum to 1 (sum_s dM_s = dM), so
    # the cations' t+ of the mixture is both cation types' shares, 1 - the anions'
    from localcond.campaign.generate import cation_share

    (row,) = json.loads((tmp_path / "systems.json").read_text())["systems"]
    shares = {t: v["value"] for t, v in row["species_share_of_conductivity"].items()}
    assert sorted(shares) == ["1", "2", "3"] and sum(shares.values()) == pytest.approx(1.0, abs=1e-9)
    assert cation_share(row)["value"] == pytest.approx(shares["1"] + shares["3"], abs=1e-9)
    assert cation_share(row)["stderr"] == row["species_share_of_conductivity"]["2"]["stderr"]


def test_cation_share_of_a_plain_electrolyte_is_its_first_type():
    from localcond.campaign.generate import cation_share

    row = {"species_share_of_conductivity": {"1": {"value": 0.7, "stderr": 0.02},
                                             "2": {"value": 0.3, "stderr": 0.02}}}
    assert cation_share(row)["value"] == pytest.approx(0.7) and cation_share({}) is None


def test_bad_variants_are_refused(tmp_path):
    grid = json.loads((ROOT / "training" / "grid.json").read_text())
    for bad, message in (({"conc": 1.0, "eps": 20, "role": "train", "sigma_cation2": 4.5}, "second cation"),
                         ({"conc": 1.0, "eps": 20, "role": "train", "mass": 2.0}, "unknown keys"),
                         ({"conc": 1.0, "eps": 20, "role": "test"}, "role must be")):
        path = tmp_path / "g.json"
        path.write_text(json.dumps(dict(grid, variants=[bad])))
        with pytest.raises(Exception, match=message):
            load_grid(path)
