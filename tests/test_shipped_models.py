"""The committed default model is what its recipe in models/README.md makes."""

from pathlib import Path

import numpy as np

from localcond.cli import main as cli
from localcond.model.contract import read_metadata
from localcond.runtime import evaluate, load_model

MODELS = Path(__file__).resolve().parents[1] / "models"


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
