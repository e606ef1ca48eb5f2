"""Compact training records: labels, positions, checks, the CLI, the committed set."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from localcond.campaign.dataset import (
    QUANT,
    check_directory,
    check_record,
    label_origins,
    load_segment,
    positions,
    quantize,
    read_record,
)
from localcond.errors import LocalcondError
from localcond.units import molar_conductivity_prefactor
from synthetic import brownian, write_dump

ROOT = Path(__file__).resolve().parents[1]
T = 298.0


def test_positions_round_trip_to_the_quantum_and_wrap():
    rng = np.random.default_rng(0)
    cell = np.diag([40.0, 30.0, 50.0])
    origin = np.array([-5.0, 2.0, 0.5])
    x = origin + rng.random((100, 3)) @ cell + rng.integers(-3, 4, size=(100, 3)) @ cell  # some images
    back = positions({"positions_u16": quantize(x, origin, cell)[None], "cell": cell, "box_origin": origin}, 0)
    frac = (x - origin) @ np.linalg.inv(cell)
    wrapped = origin + (frac - np.floor(frac)) @ cell
    d = (back - wrapped) @ np.linalg.inv(cell)
    d -= np.round(d)  # a coordinate at the top edge may come back at the bottom
    assert np.abs(d @ cell).max() <= 0.5 * 50.0 / QUANT + 1e-9


def test_labels_by_hand_and_self_only_truncation(tmp_path):
    """Exact labels sum to |ΔM(τ2)|² − |ΔM(τ1)|² per origin (computed here directly);
    truncated at R below any ion distance they are the self terms, whose mean is the
    slope-form Nernst–Einstein Λ_NE."""
    path = brownian(tmp_path / "b.dump", 10, 60, 0.05, 0.5, seed=3)
    seg = load_segment(path, 2.0)
    labels = label_origins(seg, (2, 6), (1e-6,), 5, T, first_origin=1)
    x, q = seg.positions, seg.ions.charges
    origins = np.arange(1, 60 - 6, 5)
    assert np.allclose(labels["time_ps"], origins * 0.5)
    scale = 20 * molar_conductivity_prefactor(T, 10.0) / (4 * 0.5)
    for k, o in enumerate(origins):
        dm1 = (q[:, None] * (x[o + 2] - x[o])).sum(axis=0)
        dm2 = (q[:, None] * (x[o + 6] - x[o])).sum(axis=0)
        assert labels["collective"][k] == pytest.approx(dm2 @ dm2 - dm1 @ dm1, rel=1e-12)
        assert labels["label_exact"][k].sum() == pytest.approx(scale * (dm2 @ dm2 - dm1 @ dm1), rel=1e-5)
        self2 = ((x[o + 6] - x[o]) ** 2).sum(axis=1) - ((x[o + 2] - x[o]) ** 2).sum(axis=1)
        assert np.allclose(labels["label_truncated_R1e-06"][k], scale * self2, rtol=1e-5, atol=1e-3)


def test_cli_builds_a_record_and_check_catches_tampering(tmp_path):
    dumps = [brownian(tmp_path / f"r{k}.dump", 8, 400, 0.05, 0.5, seed=10 + k) for k in range(2)]
    out = tmp_path / "set" / "mine.npz"
    proc = subprocess.run([sys.executable, "-m", "localcond", "dataset", *map(str, dumps), "--types",
                           "Na", "Cl", "--timestep-fs", "2", "--temperature-k", "298", "--radii", "5",
                           "--max-origins", "40", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = read_record(out)
    meta = record["metadata"]
    assert list(record["species"]) == ["Na", "Cl"] and meta["species_charges"] == [1.0, -1.0]
    assert 30 <= meta["n_origins"] <= 50 and set(record["segment"].tolist()) == {0, 1}
    assert "label_truncated_R5" in record and meta["molar_conductivity"]["unit"] == "S cm^2 mol^-1"
    proc = subprocess.run([sys.executable, "-m", "localcond", "dataset", "--check", str(out.parent)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 records verified" in proc.stdout, proc.stderr

    # A changed label: the checksum and the label mean both object.
    data = dict(np.load(out))
    data["label_exact"] = data["label_exact"].copy()
    data["label_exact"][0, 0] += 1e3 * np.abs(data["label_exact"]).mean()
    np.savez_compressed(out, **data)
    with pytest.raises(LocalcondError, match="sha256"):
        check_directory(out.parent)
    with pytest.raises(LocalcondError, match="mean stored label"):
        check_record(out)


def test_a_missing_species_name_is_an_error(tmp_path):
    x = np.zeros((5, 2, 3))
    x[:, 0, 0] = np.arange(5.0)
    path = write_dump(tmp_path / "h.dump", np.arange(5) * 500, 20.0, [1, 2], [1.0, -1.0], x)
    proc = subprocess.run([sys.executable, "-m", "localcond", "dataset", str(path), "--types", "Na",
                           "--timestep-fs", "2", "--temperature-k", "298", "--window-ps", "1", "2",
                           "--out", str(tmp_path / "x.npz")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no species name for atom type(s) [2]" in proc.stderr


@pytest.mark.parametrize("manifest", sorted((ROOT / "training" / "data").glob("*/manifest.json")),
                         ids=lambda p: p.parent.name)
def test_committed_training_set(manifest):
    """Per committed system: checksum, and mean stored label = Λ over the same origins."""
    rows = check_directory(manifest.parent)
    listed = json.loads(manifest.read_text())["records"]
    assert len(rows) == len(listed) > 0


def test_neighbor_search_matches_a_brute_force_image_sum():
    """periodic_edges against a loop over all image translations: triclinic, mixed
    periodicity, cutoff longer than the box; a sparse 1000 Å box and a near-flat cell
    give their (few or many) pairs at once."""
    from itertools import product

    from localcond.engine.neighbors import periodic_edges

    rng = np.random.default_rng(5)
    cell = np.array([[10.0, 0, 0], [3, 9, 0], [1, 2, 8]])
    for pbc, cutoff in (((True, True, True), 12.0), ((True, False, True), 7.0), ((False,) * 3, 6.0)):
        x = rng.random((12, 3)) @ cell
        edge_index, edge_vec = periodic_edges(x, cell, pbc, cutoff)
        reach = [range(-3, 4) if p else range(0, 1) for p in pbc]
        expected = set()
        for shift in product(*reach):
            image = np.array(shift) @ cell
            for i in range(12):
                for j in range(12):
                    d = x[j] + image - x[i]
                    if 0 < d @ d < cutoff**2:
                        expected.add((i, j, *np.round(d, 6)))
        found = {(i, j, *np.round(d, 6)) for (i, j), d in zip(edge_index.T, edge_vec)}
        assert found == expected and np.all(np.diff(edge_index[0]) >= 0)
    sparse = rng.random((200, 3)) * 1000.0
    assert periodic_edges(sparse, np.eye(3) * 1000.0, (True,) * 3, 5.0)[0].shape[1] < 10
    flat = np.diag([40.0, 40.0, 0.5])
    edges, _ = periodic_edges(rng.random((50, 3)) @ flat, flat, (True,) * 3, 6.0)
    assert edges.shape[1] > 50 * 12  # every neighbour in the plane and its images along z


def test_dense_records_are_checked_against_their_collective_sums(tmp_path):
    """dataset --check on a dense-label directory: Σ_i a_i (float16) must equal the stored
    float64 |ΔM|²/τ at every origin and lag. Built here from random displacements by the
    definition a_i = q_i Δr_i·ΔM/τ; one altered a_i is named by origin and lag."""
    import json

    from localcond.campaign.dataset import DENSE_FORMAT, check_directory, update_manifest

    rng = np.random.default_rng(4)
    q = np.array([1.0, -1.0] * 10)
    lags = np.array([2.0, 5.0])
    dr = rng.normal(size=(6, 2, 20, 3))  # [origin, lag, ion, xyz]
    dm = np.einsum("i,olix->olx", q, dr)
    a = np.einsum("i,olix,olx->oli", q, dr, dm) / lags[None, :, None]
    dm2 = np.einsum("olx,olx->ol", dm, dm) / lags[None, :]
    path = tmp_path / "s.npz"
    meta = {"format": DENSE_FORMAT, "system": "s", "role": "train", "command": "test", "commit": "x"}
    np.savez(path, a=a.astype(np.float16), dm2_per_ps=dm2, lags_ps=lags, metadata=json.dumps(meta))
    update_manifest(tmp_path, path, {"system": "s"}, DENSE_FORMAT)
    (row,) = check_directory(tmp_path)
    assert row["n_origins"] == 6 and row["largest_relative_mismatch"] < 5e-3
    a[3, 1, 7] += 0.05 * np.abs(a[3, 1]).sum()
    np.savez(path, a=a.astype(np.float16), dm2_per_ps=dm2, lags_ps=lags, metadata=json.dumps(meta))
    update_manifest(tmp_path, path, {"system": "s"}, DENSE_FORMAT)
    with pytest.raises(LocalcondError, match="at origin 3, lag 5 ps"):
        check_directory(tmp_path)


def test_a_record_of_molecular_ions_equals_one_of_the_ions_alone(tmp_path):
    """dataset --molecules on an all-atom-like dump (molecular anions, solvent) stores the
    same ions, positions, charges and labels as a record of the ions-only dump of the
    same trajectory: the solvent and the anions' satellites enter nothing."""
    from test_conductivity import molecular_dumps

    every, ions = molecular_dumps(tmp_path, n_frames=60)
    common = ["--timestep-fs", "2", "--temperature-k", "298", "--window-ps", "2", "4", "--max-origins", "20"]
    for dump, types, extra, out in ((ions, ["Li", "A"], [], "ions.npz"),
                                    (every, ["Li", "A", "NULL", "NULL", "NULL"], ["--molecules"], "all.npz")):
        proc = subprocess.run([sys.executable, "-m", "localcond", "dataset", str(dump), "--types", *types, *common,
                               *extra, "--out", str(tmp_path / out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    a, b = read_record(tmp_path / "ions.npz"), read_record(tmp_path / "all.npz")
    assert b["metadata"]["species_charges"] == [1.0, -1.0] and len(b["charge"]) == 20
    for key in ("charge", "positions_u16", "label_exact", "collective"):
        np.testing.assert_array_equal(b[key], a[key])
    assert b["metadata"]["molar_conductivity"]["value"] == pytest.approx(a["metadata"]["molar_conductivity"]["value"],
                                                                           rel=1e-12)
