"""The model uncertainty of Λ_pred (engine/reducers/members.py): each ensemble member's
Λ_pred, their standard deviation in the fix's f_ID[10], the summaries and `reduce`,
against numpy over the members' outputs and against the jackknife formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from localcond.campaign.learn.modules import Ensemble
from localcond.engine.options import ReducerOptions
from localcond.engine.reducers.members import MemberMeans
from localcond.engine.reducers.reducer_set import ReducerSet
from localcond.engine.reducers.timeline import Evaluation
from localcond.engine.runtime import LoadedModel, evaluate, evaluate_members, n_members
from localcond.model.reference import make_reference_model

rng = np.random.default_rng(7)


def feed(reducers: ReducerSet, member_lambda: np.ndarray, species: np.ndarray, start: int = 0) -> None:
    """member_lambda: [evaluations, k, ions]; λ is the members' mean."""
    ids = np.arange(1, member_lambda.shape[2] + 1)
    for t, members in enumerate(member_lambda, start=start):
        reducers.observe(Evaluation(10 * t, 0.001, 10, "run"), members.mean(axis=0), species, ids,
                         member_sums=members.sum(axis=1))


def test_the_uncertainty_is_the_members_spread_of_their_own_lambda_pred():
    """Λ_pred,k = mean over evaluations of member k's mean over ions; the mean of the
    Λ_pred,k is Λ_pred (means commute) and f_ID[10] is their standard deviation (ddof 1)."""
    k, evaluations, ions = 5, 40, 30
    member_lambda = rng.normal(loc=rng.normal(500.0, 40.0, (1, k, 1)), scale=300.0, size=(evaluations, k, ions))
    species = np.arange(ions) % 2
    reducers = ReducerSet(ReducerOptions(), ["cation", "anion"], [1.0, -1.0], n_members=k)
    feed(reducers, member_lambda, species)
    per_member = member_lambda.mean(axis=2).mean(axis=0)
    out = reducers.observed()
    assert out.model_uncertainty == pytest.approx(np.std(per_member, ddof=1), rel=1e-12)
    assert out.lambda_pred == pytest.approx(per_member.mean(), rel=1e-12)
    summary = reducers.summary(reducers.merged(), "test")["lambda_pred"]
    assert summary["model_uncertainty"] == pytest.approx(out.model_uncertainty, rel=1e-12)
    np.testing.assert_allclose(summary["member_lambda_pred"], per_member, rtol=1e-12)


def test_a_single_model_has_no_model_uncertainty_and_an_ensemble_needs_its_members():
    single = ReducerSet(ReducerOptions(), ["cation", "anion"], [1.0, -1.0])
    single.observe(Evaluation(0, 0.001, 10, "run"), np.ones(4), np.array([0, 1, 0, 1]), np.arange(1, 5))
    assert np.isnan(single.observed().model_uncertainty)
    assert single.summary(single.merged(), "t")["lambda_pred"]["model_uncertainty"] is None
    ensemble = ReducerSet(ReducerOptions(), ["cation", "anion"], [1.0, -1.0], n_members=3)
    with pytest.raises(ValueError, match="an ensemble of 3 members needs each member's sum"):
        ensemble.observe(Evaluation(0, 0.001, 10, "run"), np.ones(4), np.array([0, 1, 0, 1]), np.arange(1, 5))
    with pytest.raises(ValueError, match="at least 2 members"):
        MemberMeans(1)


def test_members_split_over_ranks_and_restarts_add_up():
    """Two ranks' shares of a restart, merged, give the whole; a run continued from the
    state equals the run in one piece."""
    k = 4
    member_lambda = rng.normal(300.0, 50.0, size=(20, k, 12))
    whole = MemberMeans(k)
    for members in member_lambda:
        whole.update(members.mean(axis=1))
    first = MemberMeans(k)
    for members in member_lambda[:7]:
        first.update(members.mean(axis=1))
    shares = [MemberMeans.from_state(first.state()).for_rank(r, 2) for r in range(2)]
    shares[0].merge(shares[1])
    for members in member_lambda[7:]:
        shares[0].update(members.mean(axis=1))
    np.testing.assert_allclose(shares[0].member_lambda(), whole.member_lambda(), rtol=1e-12)


def test_the_runtime_gives_each_member_and_their_mean_is_the_model():
    """An ensemble's members() through the runtime: λ equals forward exactly and each
    row is that member's own output; a single model has no members."""
    members = [make_reference_model(["Na", "Cl"], [1.0, -1.0], 6.0 + m)[0] for m in range(3)]
    module, metadata = torch.jit.script(Ensemble(members)), make_reference_model(["Na", "Cl"], [1.0, -1.0], 9.0)[1]
    model = LoadedModel(module, metadata, path=None)  # type: ignore[arg-type]
    positions = rng.uniform(0, 15.0, (24, 3))
    from localcond.engine.neighbors import periodic_edges

    edge_index, edge_vec = periodic_edges(positions, np.eye(3) * 15.0, (True,) * 3, 9.0)
    species = np.arange(24) % 2
    lam, each = evaluate_members(model, species, edge_index, edge_vec, 24)
    assert n_members(model) == 3 and each.shape == (3, 24)
    np.testing.assert_array_equal(lam, evaluate(model, species, edge_index, edge_vec, 24))
    single = LoadedModel(torch.jit.script(members[0]), metadata, path=None)  # type: ignore[arg-type]
    np.testing.assert_allclose(each[0], evaluate(single, species, edge_index, edge_vec, 24), rtol=1e-12)
    assert np.std(each, axis=0).max() > 0  # the members differ
    assert n_members(single) == 0 and evaluate_members(single, species, edge_index, edge_vec, 24)[1] is None
