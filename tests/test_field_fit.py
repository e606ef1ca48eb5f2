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
