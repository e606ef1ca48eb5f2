"""The committed models: the reference model is what its recipe in
models/README.md makes; the default model is installed with the package, its
card belongs to it, and the fix with it on the grid's own input gives what
`localcond predict` gives on the dumped frames."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import LMP
from localcond.cli import main as cli
from localcond.model.default import card, model_path
from localcond.io.lammps_dump import read_dump
from localcond.campaign.learn.evaluate import evaluate as evaluate_records
from localcond.model.contract import read_metadata
from localcond.engine.runtime import evaluate, load_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def test_reference_model_matches_its_recipe(tmp_path):
    fresh = tmp_path / "fresh.pt"
    assert cli(["reference-model", str(fresh), "--species", "Li:1", "PF6:-1", "--cutoff", "10"]) == 0
    shipped = MODELS / "reference-cosine-10A.pt"
    assert read_metadata(shipped) == read_metadata(fresh)

    rng = np.random.default_rng(0)
    species = rng.integers(0, 2, 50)
    edge_index = rng.integers(0, 50, (2, 400))
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_vec = rng.normal(scale=5.0, size=(edge_index.shape[1], 3))
    a = evaluate(load_model(shipped), species, edge_index, edge_vec, 30)
    b = evaluate(load_model(fresh), species, edge_index, edge_vec, 30)
    assert np.abs(a).max() > 0
    np.testing.assert_array_equal(a, b)


def test_default_model_is_installed_with_its_card(capsys):
    assert cli(["default-model"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == model_path() and path.is_file()
    md = read_metadata(path)
    assert md.trained and md.species == ("cation", "anion") and md.charges == (1.0, -1.0)
    record = card()
    rows = record["evaluation"]["systems"]
    trained_on = sorted(r["system"] for r in rows if r["role"] == "train")
    assert trained_on == sorted(md.training_systems)
    # the card's ground truth is the grid's table; its Λ_pred is this model's
    table = {r["system"]: r for r in json.loads((ROOT / "training" / "systems.json").read_text())["systems"]}
    for row in rows:
        if row["system"] in table:
            assert row["lambda"]["value"] == pytest.approx(table[row["system"]]["molar_conductivity"]["value"],
                                                           rel=1e-12)
    first = next(r for r in rows if r["role"] == "train")
    again = evaluate_records(path, [ROOT / first["record"]])["systems"][0]
    assert again["lambda_pred"]["value"] == pytest.approx(first["lambda_pred"]["value"], rel=1e-6)


def test_default_model_evaluates_ranks_with_one_species_or_none():
    """A rank whose evaluated ions are all cations (a group of cations, a small
    sub-domain) holds the anions only as neighbours: the cations' λ must equal their λ
    when every ion is evaluated. A rank with no ions gets an empty answer."""
    model = load_model(model_path())
    rng = np.random.default_rng(4)
    box = 22.0
    positions = rng.uniform(0, box, (60, 3))
    species = np.arange(60) % 2
    order = np.argsort(species, kind="stable")  # cations first: the outputs, anions after
    positions, species = positions[order], species[order]
    from localcond.engine.neighbors import periodic_edges

    edge_index, edge_vec = periodic_edges(positions, np.eye(3) * box, (True,) * 3, model.metadata.cutoff)
    every = evaluate(model, species, edge_index, edge_vec, 60)
    cations = evaluate(model, species, edge_index, edge_vec, 30)
    assert np.abs(every[:30]).max() > 0
    np.testing.assert_allclose(cations, every[:30], rtol=1e-6, atol=1e-6 * np.abs(every).max())
    nothing = evaluate(model, species[:0], edge_index[:, :0], edge_vec[:0], 0)
    assert nothing.shape == (0,)


def test_fix_with_the_default_model_equals_predict(tmp_path):
    """The grid's input with its `model` hook (what the README's main command runs),
    a small box: the fix's λ equals `localcond predict` on the dumped frames."""
    proc = subprocess.run(
        [LMP, "-in", str(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte"), "-log", "log.lammps",
         "-screen", "none", "-var", "npairs", "60", "-var", "conc", "0.6", "-var", "eps", "14",
         "-var", "dt", "4.0", "-var", "equil", "500", "-var", "prod", "200", "-var", "every", "50",
         "-var", "lcevery", "50", "-var", "lceh", "4", "-var", "model", str(model_path()), "-var", "out", "t"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, (tmp_path / "log.lammps").read_text()[-3000:]
    assert cli(["predict", str(model_path()), str(tmp_path / "t.lc.dump"), "--types", "cation", "anion",
                "--out", str(tmp_path / "offline")]) == 0
    offline = np.load(tmp_path / "offline.npz")["lambda"]
    frames = list(read_dump(tmp_path / "t.lc.dump"))
    assert len(frames) == 5 == offline.shape[0]
    for k, frame in enumerate(frames):
        fix = frame.columns["f_lc"][np.argsort(frame.ids)]
        # a float32 model: the two edge lists sum in different orders (1e-7 of the largest |λ|)
        np.testing.assert_allclose(fix, offline[k], rtol=0, atol=1e-6 * np.abs(offline[k]).max())
    summary = json.loads((tmp_path / "t.summary.json").read_text())
    lam = np.array([f.columns["f_lc"] for f in frames])
    assert summary["lambda_pred"]["value"] == pytest.approx(lam.mean(), rel=1e-8)
    # the model uncertainty (f_lc[10], the summary): the spread of the 28 jackknife members'
    # Λ_pred, each member's mean over the same frames as `predict` computes them offline
    members = np.load(tmp_path / "offline.npz")["frame_member_means"]
    assert members.shape == (5, 28)
    expected = np.std(members.mean(axis=0), ddof=1)
    assert expected > 0
    assert summary["lambda_pred"]["model_uncertainty"] == pytest.approx(expected, rel=1e-5)
    log = (tmp_path / "log.lammps").read_text().splitlines()
    header = next(k for k in range(len(log) - 1, -1, -1) if log[k].split()[:1] == ["Step"] and "f_lc[10]" in log[k])
    last = log[header + 1 + len(frames) - 1].split()  # thermo every evaluation of the production run
    assert float(last[log[header].split().index("f_lc[10]")]) == pytest.approx(expected, rel=1e-5)


def test_default_model_dynamics_are_the_training_runs():
    """The dynamics in the default model's metadata (the fix's mass and thermostat check,
    localcond/engine/domain.py) are those the training grid ran: read from the grid's
    LAMMPS input and grid file, not from the configuration that typed them."""
    import re

    text = (ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte").read_text()
    grid = json.loads((ROOT / "training" / "grid.json").read_text())
    dynamics = read_metadata(model_path()).training["dynamics"]
    masses = {int(t): float(m) for t, m in re.findall(r"^mass\s+(\d)\s+\$\(([\d.]+)\*v_mscale\)", text, re.M)}
    assert dynamics["masses"] == {"cation": masses[1], "anion": masses[2]}
    damp = re.search(r"^fix\s+\S+\s+all\s+langevin\s+\$\{temp\}\s+\$\{temp\}\s+([\d.]+)", text, re.M).group(1)
    assert dynamics["thermostat"]["style"] == "langevin" and dynamics["thermostat"]["damp_fs"] == float(damp)
    assert re.search(r"^fix\s+\S+\s+all\s+nve\b", text, re.M) and dynamics["thermostat"]["with"] == "fix nve"
    assert dynamics["thermostat"]["temperature_k"] == grid["temperature_k"]
    assert dynamics["timestep_fs"] == grid["timestep_fs"]
    sigp = float(re.search(r"^variable\s+sigp\s+index\s+([\d.]+)", text, re.M).group(1))
    sigma_anion = float(re.search(r"^pair_coeff\s+2 2\s+[\d.]+\s+([\d.]+)", text, re.M).group(1))
    # the cation sizes seen in training: the input's default and the size family's training variants
    sizes = json.loads((ROOT / "training" / "grid_sizes.json").read_text())
    trained = {sigp} | {float(v["sigma_cation"]) for v in sizes["variants"] if v["role"] == "train"}
    assert dynamics["ion_sigma_A"] == {"cation": sorted(trained), "anion": sigma_anion}
