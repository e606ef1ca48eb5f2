"""The per-ion field check recovers a planted field and rejects another field with the
same system mean (localcond.campaign.learn.field_check).

The planted field: an ion with an unlike-charged neighbour closer than R_PAIR Å is
"paired" and its label has mean PAIRED; every other ion's label has mean FREE. Labels
are that field plus independent noise far larger than the field (as real per-ion
labels are). Two TorchScript models: the planted rule itself (calibration slope 1,
intercept 0), and the reflected rule 2m − λ, whose system mean m is the same but whose
per-ion field is the mirror image (slope −1)."""

import json

import numpy as np
import pytest
import torch

from localcond.campaign.dataset import quantize
from localcond.campaign.learn.field_check import calibration, field_values, read_dense, species_share
from localcond.engine.runtime import load_model
from localcond.model.contract import ModelMetadata
from localcond.model.export import save_model

R_PAIR = 3.5  # Å
PAIRED, FREE = 200.0, 1000.0  # S cm^2/mol
N_PAIRS, BOX, ORIGINS, NOISE = 32, 26.0, 64, 1500.0


class PairRule(torch.nn.Module):
    """λ_i = free + (paired − free) · [an unlike-charged neighbour within r_pair]."""

    def __init__(self, paired: float, free: float) -> None:
        super().__init__()
        self.charges = torch.tensor([1.0, -1.0], dtype=torch.float64)
        self.paired, self.free, self.r_pair = paired, free, R_PAIR

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        q = self.charges.to(edge_vec.dtype)[species]
        i, j = edge_index[0], edge_index[1]
        close = (torch.linalg.norm(edge_vec, dim=1) < self.r_pair) & (q[i] * q[j] < 0)
        count = torch.zeros(species.shape[0], dtype=edge_vec.dtype).index_add(0, i, close.to(edge_vec.dtype))
        paired = (count[:n_local] > 0).to(edge_vec.dtype)
        return self.free + (self.paired - self.free) * paired


def metadata() -> ModelMetadata:
    return ModelMetadata(species=("cation", "anion"), charges=(1.0, -1.0), cutoff=4.0, n_layers=1,
                         dtype="float64", kind="test-pair-rule", purpose="test",
                         description="planted pair rule for testing the per-ion field check")


def configurations(rng) -> np.ndarray:
    """[O, N, 3]: cations then anions; half the cations sit R_PAIR/2 from an anion."""
    frames = []
    for _ in range(ORIGINS):
        x = rng.uniform(0, BOX, size=(2 * N_PAIRS, 3))
        for k in range(N_PAIRS // 2):
            direction = rng.normal(size=3)
            x[k] = x[N_PAIRS + k] + 0.5 * R_PAIR * direction / np.linalg.norm(direction)
        frames.append(x % BOX)
    return np.array(frames)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("field")
    rng = np.random.default_rng(7)
    x = configurations(rng)
    rule = save_model(PairRule(PAIRED, FREE), metadata(), root / "rule.pt")
    model = load_model(rule)
    types = np.array([1] * N_PAIRS + [2] * N_PAIRS)
    cell = np.eye(3) * BOX
    record_meta = {"format": "localcond-dense-labels/1", "n_ions": 2 * N_PAIRS,
                   "label_prefactor_S_cm2_per_mol_per_e2A2_per_ps": 2.0, "stride_ps": 5.0}
    arrays = dict(id=np.arange(1, 2 * N_PAIRS + 1), type=types, charge=np.where(types == 1, 1.0, -1.0),
                  cell=cell, box_origin=np.zeros(3), pbc=np.array([True] * 3),
                  positions_u16=np.stack([quantize(f, np.zeros(3), cell) for f in x]),
                  time_ps=np.arange(ORIGINS) * 5.0, lags_ps=np.array([5.0, 10.0]))
    path = root / "dense.npz"
    np.savez(path, metadata=json.dumps(record_meta), a=np.zeros((ORIGINS, 2, 2 * N_PAIRS)), **arrays)
    field = field_values(model, read_dense(path))
    # the slope-form labels over [5, 10] ps, 2 λ(10) − λ(5), are the planted field plus noise;
    # the plain-form labels at 5 ps are anything (noise of their own); stored as a = label / (N P)
    labels = field + rng.normal(scale=NOISE, size=field.shape)
    at5 = rng.normal(scale=NOISE, size=field.shape)
    plain = np.stack([at5, (labels + at5) / 2.0], axis=1)
    np.savez(path, metadata=json.dumps(record_meta), a=plain / (2 * N_PAIRS * 2.0), **arrays)
    mean = float(field.mean())
    mirror = save_model(PairRule(2 * mean - PAIRED, 2 * mean - FREE), metadata(), root / "mirror.pt")
    return read_dense(path), model, load_model(mirror), field, labels


def test_planted_field_is_recovered(planted):
    record, model, _, field, _ = planted
    assert 0.2 < np.mean(field == PAIRED) < 0.8  # both kinds of ion are present
    pred = field_values(model, record)
    result = calibration(pred, record.window_labels(5.0), stride_ps=5.0, span_ps=10.0)
    assert abs(result["slope"] - 1.0) < 3 * result["slope_stderr"]
    assert 0.8 <= result["slope"] <= 1.2
    assert abs(result["intercept"]) < 3 * result["intercept_stderr"]
    assert result["slope_stderr"] < 0.1  # the test has the power to tell the two fields apart


def test_field_with_the_same_mean_but_another_rule_fails(planted):
    record, model, mirror, _, _ = planted
    pred, other = field_values(model, record), field_values(mirror, record)
    assert other.mean() == pytest.approx(pred.mean(), rel=1e-9)  # same system mean
    result = calibration(other, record.window_labels(5.0), stride_ps=5.0, span_ps=10.0)
    assert not 0.8 <= result["slope"] <= 1.2
    assert result["slope"] == pytest.approx(-1.0, abs=4 * result["slope_stderr"])


def test_species_share_against_the_measured_share(planted):
    record, model, _, _, _ = planted
    pred = field_values(model, record)
    first = np.array([n == "cation" for n in record.species_names])
    share = species_share(pred, first, {"value": 0.5, "stderr": 0.01})
    expected = pred[:, first].sum() / pred.sum()
    assert share["prediction"] == pytest.approx(expected, rel=1e-12)
    assert share["z"] == pytest.approx((expected - 0.5) / 0.01, rel=1e-12)


def test_window_labels_are_the_slope_form(planted):
    """The slope form over [5, 10] ps recovers the labels the fixture planted through the
    plain forms at 5 and 10 ps (to the float16 storage of a); the plain-form labels alone
    (at 5 ps, pure noise) carry no field."""
    record, model, _, _, planted_labels = planted
    scale = np.abs(planted_labels).max()
    np.testing.assert_allclose(record.window_labels(5.0), planted_labels, atol=2e-3 * scale)
    pred = field_values(model, record)
    assert abs(calibration(pred, record.labels(5.0), stride_ps=5.0, span_ps=5.0)["slope"]) < 0.3


def test_share_figure_plots_each_system_at_its_shares():
    from localcond.campaign.learn.field_check import share_figure

    rows = [{"system": "a", "role": "heldout", "species_share": {"species": "cation", "prediction": 0.62,
                                                                  "measured": {"value": 0.74, "stderr": 0.02}, "z": -6.0}},
            {"system": "b", "role": "train", "species_share": {"species": "cation", "prediction": 1.4,
                                                                "measured": {"value": 0.7, "stderr": 0.1}, "z": 7.0}},
            {"system": "c", "role": "train", "species_share": {"species": "cation", "prediction": 0.5, "measured": None}}]
    fig = share_figure(rows)
    points = [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in fig.axes[0].lines
              if line.get_marker() in ("*", "o")]
    assert points == [(0.74, 0.62), (0.7, 1.4)]  # c has no measured share
    assert "a (z = -6.0)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _split(path, root, box_origin_of_second=np.zeros(3)):
    """The planted record cut into two segment files of one system, as ``localcond
    replicas`` writes them with dense_labels.segments 2 (the second listed first)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("metadata")))
    half = ORIGINS // 2
    paths = []
    for k, part in ((1, slice(half, None)), (0, slice(0, half))):
        out = dict(arrays, positions_u16=arrays["positions_u16"][part], time_ps=arrays["time_ps"][part],
                   a=arrays["a"][part], box_origin=box_origin_of_second if k == 1 else arrays["box_origin"])
        paths.append(root / (f"sys.seg{k}.npz" if k else "sys.npz"))
        np.savez(paths[-1], metadata=json.dumps({**meta, "system": "sys", "segment": k, "replica_set": "set"}), **out)
    return paths


def test_segments_of_one_system_are_joined_in_order(planted, tmp_path):
    """read_dense_systems joins a system's segment records along the origins, segment 0
    first whatever the order given: labels, positions and the calibration equal those of
    the uncut record."""
    from localcond.campaign.learn.field_check import read_dense_systems

    record, model = planted[0], planted[1]
    [joined] = read_dense_systems(_split(record.path, tmp_path))
    assert joined.metadata["segments"] == [0, 1]
    np.testing.assert_array_equal(joined.window_labels(5.0), record.window_labels(5.0))
    np.testing.assert_array_equal(joined.positions(ORIGINS - 1), record.positions(ORIGINS - 1))
    got = calibration(field_values(model, joined), joined.window_labels(5.0), stride_ps=5.0, span_ps=10.0)
    want = calibration(field_values(model, record), record.window_labels(5.0), stride_ps=5.0, span_ps=10.0)
    assert got["slope"] == want["slope"] and got["slope_stderr"] == want["slope_stderr"]


def test_records_of_different_runs_are_not_joined(planted, tmp_path):
    from localcond.campaign.learn.field_check import read_dense_systems
    from localcond.errors import LocalcondError

    with pytest.raises(LocalcondError, match="different runs"):
        read_dense_systems(_split(planted[0].path, tmp_path, box_origin_of_second=np.ones(3)))
