"""The field fit's pieces (localcond.campaign.learn.field_fit): the pooled measured share,
and the export of standardised parameters as the model's raw weights, checked against
the design the fit itself predicts with."""


import numpy as np
import pytest
import torch

from localcond.campaign.learn.field_fit import FieldFit, pooled_share
from localcond.engine.neighbors import periodic_edges
from localcond.model.two_scale import make_two_scale_model


def test_pooled_share_is_the_inverse_variance_mean():
    def row(t_plus, error):  # the tables' shares per atom type: cations 1, anions 2, summing to 1
        return {"species_share_of_conductivity": {"1": {"value": t_plus, "stderr": error},
                                                  "2": {"value": 1.0 - t_plus, "stderr": error}}}

    card, replica = row(0.70, 0.02), row(0.80, 0.04)
    value, error = pooled_share(card, replica)
    assert value == pytest.approx((0.70 / 0.02**2 + 0.80 / 0.04**2) / (1 / 0.02**2 + 1 / 0.04**2))
    assert error == pytest.approx((1 / 0.02**2 + 1 / 0.04**2) ** -0.5)
    assert pooled_share(card, None) == pytest.approx((0.70, 0.02)) and pooled_share({}, None) == (None, None)


@pytest.mark.parametrize("mode", ["relative", "by_species"])
def test_exported_weights_reproduce_the_standardised_fit(mode):
    """Members fitted on standardised columns [1, p, p̄] per species, folded into raw
    weights: the exported module's members equal design @ θ on a fresh configuration."""
    rng = np.random.default_rng(5)
    module, _ = make_two_scale_model(["cation", "anion"], [1.0, -1.0], cutoff=7.0, inner_cutoff=4.0, around=mode)
    fit = FieldFit.__new__(FieldFit)
    fit.module, fit.species = module, ["cation", "anion"]
    f = module.n_features + module.n_around
    fit.scale = [(rng.normal(size=f), rng.uniform(0.5, 2.0, size=f)) for _ in range(2)]
    thetas = rng.normal(size=(3, fit.n_params))
    bias, own, around = fit.raw_weights(thetas)
    exported, _ = make_two_scale_model(["cation", "anion"], [1.0, -1.0], cutoff=7.0, inner_cutoff=4.0, members=3,
                                       around=mode)
    exported.set_weights(bias, own, around)

    x = rng.random((20, 3)) * 12.0
    species = np.arange(20) % 2
    ei, ev = (torch.as_tensor(a) for a in periodic_edges(x, np.eye(3) * 12.0, (True,) * 3, 7.0))
    p, pbar = module.features(torch.as_tensor(species), ei, ev, 20)
    raw = np.concatenate([p.numpy(), pbar.numpy()], axis=1)
    design = np.zeros((20, fit.n_params))
    block = 1 + f
    for k, (mean, std) in enumerate(fit.scale):
        ions = species == k
        design[ions, k * block] = 1.0
        design[ions, k * block + 1:(k + 1) * block] = (raw[ions] - mean) / std
    expected = thetas @ design.T  # [K, n]
    got = exported.members(torch.as_tensor(species), ei, ev, 20).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_pooled_share_takes_every_run_of_the_system():
    def row(t_plus, error):
        return {"species_share_of_conductivity": {"1": {"value": t_plus, "stderr": error},
                                                  "2": {"value": 1.0 - t_plus, "stderr": error}}}

    runs = [(0.70, 0.02), (0.80, 0.04), (0.60, 0.05)]
    value, error = pooled_share(*(row(*r) for r in runs), None)
    weights = [1 / e**2 for _, e in runs]
    assert value == pytest.approx(sum(w * v for w, (v, _) in zip(weights, runs)) / sum(weights))
    assert error == pytest.approx(sum(weights) ** -0.5)


def test_means_from_feature_sums_equal_the_design_mean():
    """The Λ and share rows of a system known by its training record are formed from
    per-species sums of the raw features; they equal the mean of the standardised design
    over the same ions and frames formed ion by ion (SystemRows.mean_rows)."""
    from localcond.campaign.learn.field_fit import SystemRows, means_from_sums

    rng = np.random.default_rng(11)
    frames, n, f = 7, 30, 5
    species = (rng.random(n) < 0.4).astype(int)
    raw = rng.normal(size=(frames, n, f)).astype(np.float32)
    scale = [(rng.normal(size=f), rng.uniform(0.5, 2.0, size=f)) for _ in range(2)]
    row = SystemRows("s", "train", None, raw, species, scale, 1.0, 1.0, None, None, 5.0)
    sums = np.stack([raw[:, species == k].astype(np.float64).sum(axis=1).mean(axis=0) for k in range(2)])
    for got, want in zip(means_from_sums(sums, species, scale), row.mean_rows()):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_ideal_share_by_hand():
    """Uncorrelated ions, one Langevin damping time: D0 ∝ 1/m, so a species' share of the
    conductivity is n q² / m over the sum. 1:1 salt of masses 20/60: 60/80; a 2:1 salt
    (one M²⁺ of mass 24, two X⁻ of mass 35): (4/24) / (4/24 + 2/35)."""
    from localcond.campaign.learn.field_fit import ideal_share

    charges = {"cation": 1.0, "anion": -1.0}
    assert ideal_share({"cation": 50, "anion": 50}, charges, {"cation": 20.0, "anion": 60.0}, "cation") \
        == pytest.approx(0.75)
    assert ideal_share({"cation": 1, "anion": 2}, {"cation": 2.0, "anion": -1.0}, {"cation": 24.0, "anion": 35.0},
                       "cation") == pytest.approx((4 / 24) / (4 / 24 + 2 / 35))


def _two_system_fit():
    """A FieldFit of two training systems known by their mean rows only (Λ and the first
    species' share), with as many parameters as constraints: [1, x] per species."""
    from types import SimpleNamespace

    from localcond.campaign.learn.field_fit import SystemRows

    fit = FieldFit.__new__(FieldFit)
    fit.module, fit.species = SimpleNamespace(n_features=1, n_around=0), ["cation", "anion"]
    species = np.array([0, 1] * 5)
    fit.rows, fit.blocks, fit.ideal = {}, {}, {}
    for name, (m_plus, m_minus, lam, share) in {"a": (0.3, -0.2, 900.0, 0.70), "b": (-0.5, 0.8, 1500.0, 0.80)}.items():
        xbar = np.array([0.5, 0.5 * m_plus, 0.5, 0.5 * m_minus])
        xfirst = np.r_[xbar[:2], 0.0, 0.0]
        row = SystemRows(name, "train", None, None, species, [], lam, 0.01 * lam, share, 0.01, 5.0,
                         means=(xbar, xfirst))
        fit.rows[name], fit.blocks[name], fit.ideal[name] = row, (None, row.mean_blocks()), 0.75
    fit.train = ["a", "b"]
    return fit


def test_share_prior_pulls_the_share_to_the_ideal_one():
    """Two systems, four parameters: without a prior the fit meets both systems' Λ and
    measured shares (0.70, 0.80) exactly. With a narrow prior their shares become the ideal
    0.75, and Λ_pred = T of each system is the weighted compromise between its Λ row and
    its measured cation part s Λ = 0.75 T, by hand:
    T = (Λ/σ_Λ² + 0.75 s Λ/σ_c²) / (1/σ_Λ² + 0.75²/σ_c²), σ_c = σ_s Λ ⊕ s σ_Λ."""
    fit = _two_system_fit()
    theta = fit.solve(fit.train, 1e-12, 1e-12, None)
    for name, share in (("a", 0.70), ("b", 0.80)):
        xbar, xfirst = fit.rows[name].mean_rows()
        assert xbar @ theta == pytest.approx(fit.rows[name].lam, rel=1e-9)
        assert (xfirst @ theta) / (xbar @ theta) == pytest.approx(share, abs=1e-9)
    theta = fit.solve(fit.train, 1e-12, 1e-12, 1e-4)
    for name, row in fit.rows.items():
        xbar, xfirst = row.mean_rows()
        sigma_c = np.hypot(row.share_error * row.lam, row.share * row.lam_error)
        t = ((row.lam / row.lam_error**2 + 0.75 * row.share * row.lam / sigma_c**2)
             / (1 / row.lam_error**2 + 0.75**2 / sigma_c**2))
        assert xbar @ theta == pytest.approx(t, rel=1e-6)
        assert (xfirst @ theta) / (xbar @ theta) == pytest.approx(0.75, abs=2e-5)
    # a wide prior changes little, and the share moves toward 0.75 as it narrows
    row = fit.rows["a"]
    shares = [(row.mean_rows()[1] @ (t := fit.solve(fit.train, 1e-12, 1e-12, w))) / (row.mean_rows()[0] @ t)
              for w in (1.0, 0.03, 0.01, 0.001)]
    assert shares[0] == pytest.approx(0.70, abs=0.002) and all(np.diff(shares) > 0) and shares[-1] < 0.75


def test_share_prior_needs_langevin_masses(tmp_path):
    import json

    from localcond.campaign.learn.field_fit import load_field_config
    from localcond.errors import LocalcondError

    config = {"solver": "field", "dense": [], "tables": [], "replica_table": "r.json", "out": "out",
              "share_prior_widths": [None, 0.05]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    with pytest.raises(LocalcondError, match="langevin"):
        load_field_config(path)
    path.write_text(json.dumps({**config, "share_prior_widths": [0.0]}))
    with pytest.raises(LocalcondError, match="positive"):
        load_field_config(path)
    path.write_text(json.dumps({**config, "dynamics": {"masses": {"cation": 20.0, "anion": 60.0},
                                                       "thermostat": {"style": "langevin", "damp_fs": 500.0}}}))
    assert load_field_config(path).share_prior_widths == [None, 0.05]
