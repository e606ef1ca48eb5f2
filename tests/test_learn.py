"""Training and evaluation on synthetic records with a known answer: per-ion labels
g(environment) + heavy zero-mean noise, system targets Λ_s = mean of g."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from localcond.campaign.dataset import quantize, write_record
from localcond.campaign.labels.trajectory import IonSet
from localcond.campaign.learn.evaluate import bootstrap_error, evaluate
from localcond.campaign.learn.train import Trainer, load_config, time_split
from localcond.engine.runtime import load_model

RC = 6.0


def g_of(positions: np.ndarray, box: float, types: np.ndarray) -> np.ndarray:
    """The known local function: 50 + 30 [cation] + 10 Σ_j ½[cos(π r_ij / RC) + 1] (r_ij < RC)."""
    i, d = neighbor_list("id", Atoms(positions=positions, cell=[box] * 3, pbc=True), RC)
    coordination = np.bincount(i, weights=0.5 * (np.cos(np.pi * d / RC) + 1), minlength=len(types))
    return 50.0 + 30.0 * (types == 1) + 10.0 * coordination


def synthetic_record(path, box: float, seed: int, role: str = "train", noise: float = 60.0,
                     truncated_factor: float = 0.8, n_frames: int = 24, n_segments: int = 4,
                     diffusive_check_passed: bool = True, diffusive_warnings: tuple[str, ...] = ()):
    rng = np.random.default_rng(seed)
    n = 40
    types = np.repeat([1, 2], n // 2)
    ions = IonSet(np.arange(1, n + 1), types, np.where(types == 1, 1.0, -1.0), box**3, np.eye(3) * box,
                  (True,) * 3)
    frames = rng.random((n_frames, n, 3)) * box
    g = np.array([g_of(x, box, types) for x in frames])
    arrays = {
        "positions_u16": np.array([quantize(x, np.zeros(3), ions.cell) for x in frames]),
        "label_exact": (g + rng.normal(scale=noise, size=g.shape)).astype(np.float32),
        "label_truncated_R5": (truncated_factor * g + rng.normal(scale=2.0, size=g.shape)).astype(np.float32),
        "collective": rng.random(n_frames),
        "time_ps": np.arange(n_frames) * 10.0,
        "segment": np.repeat(np.arange(1, n_segments + 1), n_frames // n_segments),
    }
    lam = float(g.mean())
    meta = {"system": path.stem, "role": role, "concentration_mol_per_l": 1.0 / box**3 * 1e4,
            "dielectric_constant": 20.0, "temperature_k": 298.0, "n_salt": 20.0, "tau_window_ps": [1.0, 2.0],
            "species_names": ["A", "B"], "species_charges": [1.0, -1.0],
            "diffusive_check_passed": diffusive_check_passed, "diffusive_warnings": list(diffusive_warnings),
            "molar_conductivity": {"value": lam, "stderr": 0.01 * lam, "tau_systematic": 0.0,
                                   "total_error": 0.01 * lam}}
    write_record(path, ions, ["A", "B"], np.zeros(3), arrays, meta)
    return lam


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    truth = {}
    for k, box in enumerate([16.0, 18.0, 20.0, 23.0, 26.0]):
        truth[f"s{k}"] = synthetic_record(d / f"s{k}.npz", box, seed=k)
    truth["h0"] = synthetic_record(d / "h0.npz", 21.0, seed=99, role="heldout")
    synthetic_record(d / "bad.npz", 19.0, seed=7, diffusive_check_passed=False)  # must be left out
    synthetic_record(d / "warned.npz", 17.0, seed=8, diffusive_warnings=("log-slope below 1",))  # so must this
    return d, truth


def config(tmp_path, records_dir, **overrides):
    data = {"records": [str(records_dir / "*.npz")], "out": str(tmp_path / "run"),
            "model": {"family": "message-passing", "cutoff": RC, "n_layers": 1, "n_features": 16},
            "mode": "labels", "ensemble": 2, "epochs": 40, "patience": 40, "steps_per_epoch": 20,
            "batch_frames": 4, "lr": 3e-3, "seed": 0, "validation_fraction": 0.25}
    data.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def system_means(model_path, records_dir, truth):
    result = evaluate(model_path, sorted(p for p in records_dir.glob("*.npz") if p.stem in truth))
    return {r["system"]: (r["lambda_pred"]["value"], truth[r["system"]]) for r in result["systems"]}, result


@pytest.mark.parametrize("mode, label, tolerance", [("labels", "exact", 0.05), ("system", "exact", 0.03),
                                                     ("combined", "truncated_R5", 0.04)])
def test_each_mode_recovers_the_known_answer(tmp_path, records, mode, label, tolerance):
    records_dir, truth = records
    torch.set_num_threads(1)
    path = Trainer(load_config(config(tmp_path, records_dir, mode=mode, label=label)), log=lambda m: None).run("test")
    means, result = system_means(path, records_dir, truth)
    for name, (pred, lam) in means.items():
        assert abs(pred - lam) < tolerance * lam, (mode, name, pred, lam)
    held = next(r for r in result["systems"] if r["system"] == "h0")
    assert held["role"] == "heldout" and held["held_out_kind"] == "interpolation"
    assert held["lambda_pred"]["ensemble_spread"] >= 0 and np.isfinite(held["lambda_pred"]["stderr"])
    meta = load_model(path).metadata
    assert meta.trained and meta.training["mode"] == mode and "h0" not in meta.training_systems
    assert "bad" not in meta.training_systems and "s0" in meta.training_systems
    assert "warned" not in meta.training_systems
    spread = meta.training["ensemble_spread"]["s0"]
    assert len(spread["members"]) == 2 and spread["std"] == pytest.approx(np.std(spread["members"], ddof=1))
    s0 = next(r for r in result["systems"] if r["system"] == "s0")
    assert s0["lambda_pred"]["ensemble_spread"] == pytest.approx(spread["std"], rel=1e-4)
    every = evaluate(path, sorted(records_dir.glob("*.npz")))["systems"]
    assert next(r for r in every if r["system"] == "bad")["role"] == "excluded"


def test_labels_mode_learns_the_function_not_the_noise(tmp_path, records):
    """Labels have noise 60 against a spread of g of about 15: the fit must follow g per ion."""
    records_dir, _ = records
    torch.set_num_threads(1)
    path = Trainer(load_config(config(tmp_path, records_dir, ensemble=1)), log=lambda m: None).run("test")
    model = load_model(path)
    rng = np.random.default_rng(123)
    box = 21.0
    types = np.repeat([1, 2], 20)
    x = rng.random((40, 3)) * box
    g = g_of(x, box, types)
    from localcond.engine.neighbors import periodic_edges

    ei, ev = periodic_edges(x, np.eye(3) * box, (True,) * 3, RC)
    with torch.inference_mode():
        f = model.module(torch.as_tensor(types - 1), torch.as_tensor(ei), torch.as_tensor(ev, dtype=torch.float32),
                         40).numpy()
    assert np.corrcoef(f, g)[0, 1] > 0.9
    assert np.sqrt(np.mean((f - g) ** 2)) < 0.35 * g.std() + 2.0


def test_training_resumes_from_its_checkpoint(tmp_path, records):
    records_dir, _ = records
    torch.set_num_threads(1)
    first = Trainer(load_config(config(tmp_path, records_dir, ensemble=1, epochs=6)), log=lambda m: None)
    path = first.run("test")
    again = Trainer(load_config(config(tmp_path, records_dir, ensemble=1, epochs=6)), log=lambda m: None)
    import time

    start = time.time()
    path2 = again.run("test")
    assert time.time() - start < 5.0  # nothing left to train: the checkpoint says 6 of 6 epochs
    a = load_model(path).metadata.training["members"][0]["epochs"]
    b = load_model(path2).metadata.training["members"][0]["epochs"]
    assert a == b == 6


def test_time_split_keeps_whole_segments_apart(records):
    records_dir, _ = records
    from localcond.campaign.learn.data import load_system

    system = load_system(records_dir / "s0.npz", ["A", "B"], RC)
    train, val = time_split(system, 0.25)
    assert {system.frames[k].segment for k in val} == {4}
    assert {system.frames[k].segment for k in train} == {1, 2, 3}


def test_block_bootstrap_by_hand():
    """Two groups of equal size with means 0 and 2: resampled means are 0, 1 or 2 with
    probabilities 1/4, 1/2, 1/4, so the standard deviation is √(1/2)."""
    values = np.array([0.0, 0.0, 2.0, 2.0])
    assert bootstrap_error(values, np.array([1, 1, 2, 2])) == pytest.approx(np.sqrt(0.5), rel=0.05)


def test_bad_configuration_is_refused(tmp_path, records):
    records_dir, _ = records
    path = config(tmp_path, records_dir, mode="combined", label="exact")
    proc = subprocess.run([sys.executable, "-m", "localcond", "train", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "mode 'combined' trains on truncated labels" in proc.stderr
    path.write_text(json.dumps({**json.loads(path.read_text()), "mode": "labels", "learning_rate": 1}))
    proc = subprocess.run([sys.executable, "-m", "localcond", "train", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown keys ['learning_rate']" in proc.stderr


def test_surrogate_reproduces_a_function_of_its_own_form():
    """Λ = exp(5 + 0.3 ln c − 4/ε) is inside the surrogate's family: exact at held-out points."""
    from localcond.campaign.learn.evaluate import surrogate

    def row(c, eps, role):
        lam = float(np.exp(5 + 0.3 * np.log(c) - 4.0 / eps))
        return {"role": role, "concentration_mol_per_l": c, "dielectric_constant": eps,
                "lambda": {"value": lam, "total_error": 0.05 * lam}}

    rows = [row(c, e, "train") for c in (0.2, 0.5, 1.0, 1.5) for e in (10, 20, 30)]
    rows += [row(0.6, 14, "heldout"), row(2.0, 17, "heldout")]
    surrogate(rows)
    for r in rows:
        assert r["surrogate"]["value"] == pytest.approx(r["lambda"]["value"], rel=1e-9)


def test_size_surrogate_and_held_out_classes_by_hand():
    """Λ = exp(5 + 0.3 ln c − 4/ε − 0.2 σ) with σ the cations' mean size is inside the size
    surrogate's family: exact on held-out sizes and on a mixture (its mean size); the
    state-point surrogate cannot follow the size. A mass-scaled system is a control, a
    size outside the training sizes an extrapolation."""
    from localcond.campaign.grid import SystemSpec, ions_description
    from localcond.campaign.learn.evaluate import classify_held_out, size_surrogate, surrogate

    def row(c, eps, role, **ions):
        description = ions_description(SystemSpec("x", role, c, eps, 1, tuple(sorted(ions.items()))))
        lam = float(np.exp(5 + 0.3 * np.log(c) - 4.0 / eps - 0.2 * description["sigma_cation_mean"]))
        return {"role": role, "concentration_mol_per_l": c, "dielectric_constant": eps, "ions": description,
                "lambda": {"value": lam, "total_error": 0.05 * lam}}

    rows = [row(c, e, "train") for c in (0.2, 0.5, 1.0, 1.5) for e in (10, 20, 30)]
    rows += [row(c, e, "train", sigp=s) for c, e in ((0.35, 14), (0.75, 20), (1.0, 10)) for s in (2.5, 5.0)]
    held = [row(0.6, 14, "heldout", sigp=4.0), row(0.6, 14, "heldout", sigp=2.5, sigq=4.5, xmix=0.5),
            row(0.6, 14, "heldout", mscale=4.0), row(0.6, 14, "heldout", sigp=6.0)]
    assert held[1]["ions"]["sigma_cation_mean"] == pytest.approx(3.5)
    rows += held
    classify_held_out(rows)
    surrogate(rows)
    size_surrogate(rows)
    assert [r["held_out_kind"] for r in held] == ["interpolation", "interpolation", "control", "extrapolation"]
    for r in rows:
        assert r["surrogate_size"]["value"] == pytest.approx(r["lambda"]["value"], rel=1e-9)
    assert abs(held[0]["surrogate"]["relative_error"]) > 0.05  # exp(−0.2 × 1) away from the 3 Å systems


def test_power_spectrum_family_trains_with_standardised_descriptors(tmp_path, records):
    records_dir, truth = records
    torch.set_num_threads(1)
    spec = {"family": "power-spectrum", "cutoff": RC, "n_max": 3, "l_max": 2, "hidden": [16]}
    path = Trainer(load_config(config(tmp_path, records_dir, model=spec, ensemble=1)),
                   log=lambda m: None).run("test")
    means, _ = system_means(path, records_dir, truth)
    for name, (pred, lam) in means.items():
        assert abs(pred - lam) < 0.05 * lam, (name, pred, lam)
    assert load_model(path).metadata.kind == "ensemble/power-spectrum"


def test_cached_descriptors_give_the_exported_model_s_output(records):
    """Training on cached power-spectrum descriptors predicts exactly what the full
    model (descriptors recomputed from the edges) gives."""
    from localcond.campaign.learn.data import collate
    from localcond.campaign.learn.train import _predict, descriptor_key

    records_dir, _ = records
    spec = {"family": "power-spectrum", "cutoff": RC, "n_max": 3, "l_max": 2, "hidden": [8]}
    trainer = Trainer(load_config(config(records_dir.parent, records_dir, model=spec)), log=lambda m: None)
    model = trainer.new_model(spec, 0, 100.0, 20.0)
    frames = trainer.systems[0].frames[:3]
    batch = collate(frames, [0, 0, 0])
    assert descriptor_key(model.inner) in batch.cache
    cached = _predict(model, batch)
    full = model(batch.species, batch.edge_index, batch.edge_vec, batch.n_nodes)
    assert torch.allclose(cached, full, rtol=1e-5, atol=1e-4)


def test_cli_trains_and_evaluates_with_a_parity_plot(tmp_path, records):
    records_dir, truth = records
    path = config(tmp_path, records_dir, ensemble=1, epochs=3, steps_per_epoch=5)
    proc = subprocess.run([sys.executable, "-m", "localcond", "train", str(path)], capture_output=True,
                          text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "run" / "model.pt"
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "localcond", "evaluate", str(model), "--records",
                           str(records_dir / "s*.npz"), str(records_dir / "h0.npz"), "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert {r["system"] for r in result["systems"]} == set(truth)
    assert result["summary"]["train"]["n"] == 5 and result["summary"]["interpolation"]["n"] == 1
    import matplotlib.image

    image = matplotlib.image.imread(out.with_suffix(".png"))
    assert image.shape[:2] == (500, 500)
    for row in result["systems"]:
        assert f"{row['system']:16s}" in proc.stdout

    # --long-lag-errors: z against an error that also covers long lags, for the systems the table tested
    table = tmp_path / "replicas.json"
    table.write_text(json.dumps({"systems": [{"system": "h0", "long_lag_check": {"tested": True, "total_error": 1e4}},
                                             {"system": "s0", "long_lag_check": {"tested": False}}]}))
    proc = subprocess.run([sys.executable, "-m", "localcond", "evaluate", str(model), "--records",
                           str(records_dir / "s*.npz"), str(records_dir / "h0.npz"), "--json", str(out),
                           "--long-lag-errors", str(table)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    again = {r["system"]: r for r in json.loads(out.read_text())["systems"]}
    before = {r["system"]: r for r in result["systems"]}
    h0 = again["h0"]
    assert h0["lambda"]["total_error"] == 1e4 and h0["lambda"]["error_covers_long_lags"]
    pred = h0["lambda_pred"]
    assert h0["z"] == pytest.approx((pred["value"] - h0["lambda"]["value"]) / np.hypot(pred["stderr"], 1e4))
    assert again["s0"]["z"] == pytest.approx(before["s0"]["z"]) and not again["s0"]["lambda"]["error_covers_long_lags"]


def test_shared_descriptor_ensemble_equals_the_plain_ensemble(tmp_path):
    """Members with the same power-spectrum descriptor: computing it once and running
    the members' MLPs as batched products gives each member's own output and their
    mean (float32 rounding: the products sum in another order), also after export
    and reload."""
    from localcond.campaign.learn.modules import Ensemble, Scaled, SharedDescriptorEnsemble
    from localcond.model.export import save_model
    from localcond.model.families import make_model

    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 14.0, (40, 3))
    i, j, d = neighbor_list("ijD", Atoms(positions=positions, cell=[14.0] * 3, pbc=True), 6.0)
    species = torch.from_numpy(np.arange(40) % 2)
    edge_index = torch.from_numpy(np.stack([i, j]).astype(np.int64))
    edge_vec = torch.from_numpy(d).float()
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        module, metadata = make_model("power-spectrum", ["cation", "anion"], [1.0, -1.0], cutoff=6.0)
        # each member its own standardisation, as training sets it (means of the same
        # order as the spreads or larger: the folded first layer must not lose them)
        features = module.descriptors(species, edge_index, edge_vec, 40)
        module.set_standardization(species, features * (1.0 + 0.1 * seed))
        members.append(Scaled(module, offset=100.0 * seed, scale=50.0 + seed))
    plain = torch.jit.script(Ensemble(members))
    shared = torch.jit.script(SharedDescriptorEnsemble(members))
    expected = plain.members(species, edge_index, edge_vec, 40)
    assert expected.std(dim=0).min() > 0  # the members differ
    torch.testing.assert_close(shared.members(species, edge_index, edge_vec, 40), expected, rtol=1e-5, atol=1e-4)
    path = save_model(SharedDescriptorEnsemble(members), metadata, tmp_path / "shared.pt")
    reloaded = torch.jit.load(str(path))
    torch.testing.assert_close(reloaded(species, edge_index, edge_vec, 40), expected.mean(dim=0),
                               rtol=1e-5, atol=1e-4)
    # a rank whose ions are all of one species, or that has none, must still evaluate:
    # each member's output on the cations alone equals the plain ensemble's
    cations = torch.nonzero(species == 0).squeeze(1)
    keep = (species[edge_index[0]] == 0) & (species[edge_index[1]] == 0)
    remap = torch.full((40,), -1, dtype=torch.int64)
    remap[cations] = torch.arange(cations.numel())
    sub = (species[cations], remap[edge_index[:, keep]], edge_vec[keep], int(cations.numel()))
    torch.testing.assert_close(shared.members(*sub), plain.members(*sub), rtol=1e-5, atol=1e-4)
    nothing = (torch.zeros(0, dtype=torch.int64), torch.zeros((2, 0), dtype=torch.int64), torch.zeros((0, 3)), 0)
    assert tuple(reloaded.members(*nothing).shape) == (3, 0)
