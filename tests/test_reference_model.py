"""The reference model, exported and reloaded through the TorchScript path, and
evaluated on ASE-built periodic edges, equals a brute-force sum over images."""

import numpy as np
import pytest

from helpers import brute_force_reference
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model
from localcond.engine.neighbors import periodic_edges
from localcond.engine.runtime import evaluate, load_model

CASES = {
    "cubic": (np.eye(3) * 15.0, (True, True, True), 6.0),
    "cutoff beyond half box": (np.eye(3) * 7.0, (True, True, True), 9.0),
    "triclinic": (np.array([[14.0, 0, 0], [3.0, 13.0, 0], [-2.0, 1.5, 12.0]]), (True, True, True), 6.5),
    "slab (z not periodic)": (np.eye(3) * 14.0, (True, True, False), 6.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_model_matches_brute_force(tmp_path, case):
    cell, pbc, cutoff = CASES[case]
    rng = np.random.default_rng(7)
    n = 24
    positions = rng.random((n, 3)) @ cell
    species = rng.integers(0, 2, n)
    charges = np.array([1.0, -1.0])
    module, metadata = make_reference_model(["Li", "PF6"], charges, cutoff)
    model = load_model(save_model(module, metadata, tmp_path / "ref.pt"))

    edge_index, edge_vec = periodic_edges(positions, cell, pbc, cutoff)
    lam = evaluate(model, species, edge_index, edge_vec, n)

    expected = brute_force_reference(positions, charges[species], cell, pbc, cutoff)
    assert np.abs(expected).max() > 0.5  # the case has real neighbors
    np.testing.assert_allclose(lam, expected, rtol=1e-12, atol=1e-12)


def test_two_ions_by_hand(tmp_path):
    """Li+ and PF6- 3 Å apart, RC = 6 Å, no periodicity: λ = -½[cos(π/2) + 1] = -0.5 each."""
    module, metadata = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    model = load_model(save_model(module, metadata, tmp_path / "ref.pt"))
    positions = np.array([[0.0, 0, 0], [3.0, 0, 0]])
    edge_index, edge_vec = periodic_edges(positions, np.eye(3) * 50, (False,) * 3, 6.0)
    lam = evaluate(model, np.array([0, 1]), edge_index, edge_vec, 2)
    np.testing.assert_allclose(lam, [-0.5, -0.5], rtol=1e-14)
