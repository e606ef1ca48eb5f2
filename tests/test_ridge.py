"""The closed-form ridge readout (localcond.campaign.learn.ridge) against cases solved by hand,
and the trained model (TorchScript, descriptors from the edges) against the same
fit done in numpy on the systems' feature vectors."""

import json

import numpy as np
import pytest
import torch

from localcond.campaign.learn import ridge
from localcond.campaign.learn.evaluate import evaluate
from localcond.campaign.learn.train import Trainer, load_config
from localcond.engine.runtime import load_model
from test_learn import RC, config, synthetic_record


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Five training systems of test_learn's known local function at different densities."""
    d = tmp_path_factory.mktemp("records")
    truth = {f"s{k}": synthetic_record(d / f"s{k}.npz", box, seed=k)
             for k, box in enumerate([16.0, 18.0, 20.0, 23.0, 26.0])}
    return d, truth


def test_system_features_by_hand():
    """Frame 1: ions of species 0, 1, 0 with descriptors 1, 2, 3 (one feature): X = (4/3, 2/3).
    Frame 2: species 1, 1, 0 with 6, 0, 3: X = (1, 2). Mean over frames: (7/6, 4/3)."""
    x = ridge.system_features([np.array([0, 1, 0]), np.array([1, 1, 0])],
                              [np.array([[1.0], [2.0], [3.0]]), np.array([[6.0], [0.0], [3.0]])], 2)
    np.testing.assert_allclose(x, [7 / 6, 4 / 3])


def test_exact_linear_data_is_recovered():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.3]
    lam = 700.0 + x @ np.array([30.0, -4.0, 250.0])
    fit = ridge.fit_ridge(x, lam, sigma=rng.uniform(10, 50, 12), alpha=1e-10)
    assert fit.intercept == pytest.approx(700.0, rel=1e-7)
    np.testing.assert_allclose(fit.weights, [30.0, -4.0, 250.0], rtol=1e-7)


def test_infinite_penalty_leaves_the_weighted_mean():
    """α → ∞: w = 0 and the intercept minimises Σ ω_s (c − Λ_s)², ω ∝ 1/σ²: the weighted mean
    (100/1 + 400/4)/(1/1 + 1/4) = 160 for Λ = 100, 400 with σ = 1, 2."""
    x = np.array([[0.0, 1.0], [1.0, 3.0]])
    fit = ridge.fit_ridge(x, np.array([100.0, 400.0]), np.array([1.0, 2.0]), alpha=1e12)
    np.testing.assert_allclose(ridge.predict(fit, x), [160.0, 160.0], rtol=1e-6)
    # a system counted twice (a bootstrap resample) weighs twice: (2·100 + 400/4)/(2 + 1/4)
    fit = ridge.fit_ridge(x, np.array([100.0, 400.0]), np.array([1.0, 2.0]), alpha=1e12, counts=np.array([2, 1]))
    assert ridge.predict(fit, x[:1])[0] == pytest.approx(300.0 / 2.25, rel=1e-6)


def test_penalty_chosen_by_leave_one_out():
    """Λ exactly linear in X: the smallest penalty predicts left-out systems best. At a huge
    penalty each left-out Λ_k is predicted by the mean of the others,
    Λ_k − mean_(−k) = n/(n−1) (Λ_k − mean): χ² = (n/(n−1))² mean((Λ − mean)²)/σ²."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 8))
    sigma = np.full(12, 5.0)
    linear = 500.0 + x @ rng.normal(scale=50.0, size=8)
    alphas = [1e-6, 1e-2, 1.0, 1e2, 1e9]
    assert ridge.choose_alpha(x, linear, sigma, alphas)[0] == 1e-6
    noise = 500.0 + rng.normal(scale=5.0, size=12)
    alpha, table = ridge.choose_alpha(x, noise, sigma, alphas)
    assert [row["alpha"] for row in table] == alphas
    assert alpha == min(table, key=lambda row: row["loo_chi2"])["alpha"]
    assert table[-1]["loo_chi2"] == pytest.approx((12 / 11) ** 2 * np.mean((noise - noise.mean()) ** 2) / 25.0,
                                                   rel=1e-6)


def test_jackknife_members_by_hand():
    """Members' mean = the fit to all systems and their standard deviation = the jackknife
    standard error sqrt((n−1)/n Σ (P_j − P̄)²) of a prediction P, with P_j from the n
    leave-one-out fits done here directly."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 3))
    lam = 300.0 + x @ [20.0, -5.0, 8.0] + rng.normal(scale=10.0, size=7)
    sigma = rng.uniform(5, 15, 7)
    query = rng.normal(size=(4, 3))
    members = ridge.jackknife_members(x, lam, sigma, alpha=0.5)
    preds = np.array([ridge.predict(m, query) for m in members])
    scaling = ridge.standardise(x)
    full = ridge.predict(ridge.fit_ridge(x, lam, sigma, 0.5, scaling=scaling), query)
    loo = np.array([ridge.predict(ridge.fit_ridge(np.delete(x, k, 0), np.delete(lam, k), np.delete(sigma, k), 0.5,
                                                  scaling=scaling), query) for k in range(7)])
    np.testing.assert_allclose(preds.mean(axis=0), full, rtol=1e-10)
    np.testing.assert_allclose(preds.std(axis=0, ddof=1),
                               np.sqrt(6 / 7 * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0)), rtol=1e-10)


def test_trained_ridge_model_equals_the_fit_in_numpy(tmp_path, records):
    """Λ_pred of the exported model (descriptors from raw positions in TorchScript,
    `localcond evaluate`) equals the ridge fit done in numpy on the systems' feature
    vectors, and its ensemble spread the jackknife standard error; one member per
    training system."""
    records_dir, truth = records
    torch.set_num_threads(1)
    spec = {"family": "power-spectrum", "cutoff": RC, "n_max": 3, "l_max": 2, "hidden": []}
    path = config(tmp_path, records_dir, model=spec, mode="system", solver="ridge")
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "ensemble"}))
    trainer = Trainer(load_config(path), log=lambda m: None)
    path = trainer.run("test")
    setup = trainer._ridge
    members = load_model(path).metadata.training["members"]
    assert len(members) == len(trainer.systems) == 5 and all(m["alpha"] == setup.alpha for m in members)
    x, lam, sigma = setup.x, setup.lam, setup.sigma
    expected = ridge.predict(ridge.fit_ridge(x, lam, sigma, setup.alpha), x)
    loo = np.array([ridge.predict(ridge.fit_ridge(np.delete(x, k, 0), np.delete(lam, k), np.delete(sigma, k),
                                                  setup.alpha, scaling=ridge.standardise(x)), x)
                    for k in range(len(lam))])
    se = np.sqrt((len(lam) - 1) / len(lam) * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    result = evaluate(path, [records_dir / f"{s.name}.npz" for s in trainer.systems])
    got = np.array([r["lambda_pred"]["value"] for r in result["systems"]])
    np.testing.assert_allclose(got, expected, rtol=2e-4)
    np.testing.assert_allclose([r["lambda_pred"]["ensemble_spread"] for r in result["systems"]], se,
                               rtol=2e-3, atol=0.05)
    assert np.all(np.abs(got / lam - 1) < 0.05)  # Λ = mean of g is within reach of the descriptors
    # the descriptor domain: each training system's distance, from its record through the
    # exported descriptors, is that of its numpy features; the spreads are the training
    # systems' own (ddof 0), so the mean squared distance is the share of features that vary
    domain = load_model(path).metadata.training["domain"]
    distances = np.array([r["domain_distance"] for r in result["systems"]])
    z = (x - np.array(domain["mean"])) / np.array(domain["std"])
    np.testing.assert_allclose(distances, np.sqrt(np.mean(z ** 2, axis=1)), rtol=1e-4)
    assert np.mean(distances ** 2) == pytest.approx(np.mean(x.std(axis=0) > 0), rel=1e-6)
    assert result["domain_threshold"] == pytest.approx(2.0 * max(domain["leave_one_out_distance"].values()))


@pytest.mark.parametrize("change, message", [
    ({"mode": "labels"}, "solver 'ridge' fits the 'system' objective"),
    ({"model": {"family": "power-spectrum", "cutoff": RC, "hidden": [8]}}, "use family 'power-spectrum' with"),
    ({"alphas": [1.0, -1.0]}, "alphas must be positive numbers"),
    ({"ensemble": 5}, "solver 'ridge' takes no 'ensemble'"),
])
def test_bad_ridge_configuration_is_refused(tmp_path, records, change, message):
    from localcond.errors import LocalcondError

    records_dir, _ = records
    base = {"model": {"family": "power-spectrum", "cutoff": RC, "hidden": []}, "mode": "system", "solver": "ridge"}
    path = config(tmp_path, records_dir, **{**base, **change})
    if "ensemble" not in change:  # the helper sets one for the other solvers
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "ensemble"}))
    with pytest.raises(LocalcondError, match=message):
        load_config(path)


def test_a_penalty_at_the_edge_of_its_grid_is_flagged():
    """Features that carry nothing about Λ (pure noise around a constant): leave-one-out
    prefers the strongest shrinkage, the grid's largest α, which is flagged (the
    default model's fit chose α = 1000, the grid's end, without a word). A grid that
    brackets the minimum is not flagged."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 6))
    lam = 1000.0 + rng.normal(scale=5.0, size=12)
    sigma = np.full(12, 5.0)
    grid = (1e-2, 1e-1, 1.0, 10.0)
    alpha, table = ridge.choose_alpha(x, lam, sigma, grid)
    assert alpha == 10.0 and "largest of the penalties tried" in ridge.edge_warning(alpha, grid)
    truth = x @ rng.normal(scale=30.0, size=6)  # an exact signal: the weakest penalty wins
    alpha, _ = ridge.choose_alpha(x, 1000.0 + truth, np.full(12, 1.0), grid)
    assert alpha == 1e-2 and "smallest of the penalties tried" in ridge.edge_warning(alpha, grid)
    assert ridge.edge_warning(1.0, grid) is None and ridge.edge_warning(1.0, (1.0,)) is None
