"""fix localcond's reducers: global vector and files equal numpy on the dumped
per-atom values, and the same on 1 and 2 MPI ranks."""

import json

import numpy as np
import pytest

from helpers import System, run_lmp, thermo_rows
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model
from localcond.engine.reducers.store import load


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0),
                          tmp_path_factory.mktemp("m") / "ref.pt"))


def run(tmp_path, model, nprocs, extra="", newton="on"):
    system = System(model=model, steps=400, nevery=10, box=26.0, n_per_type=40, newton=newton,
                    fix_extra="file red every 5 hist -3 3 12 tcorr 4 corr 6 6 eh 5 8 298 " + extra,
                    deterministic=True)
    text = system.input_text().replace("thermo_style custom step temp f_lc[1] f_lc[2]",
                                       "thermo_style custom step f_lc[1] f_lc[3] f_lc[4] f_lc[5]")
    run_lmp(tmp_path, text, nprocs=nprocs)
    return (json.loads((tmp_path / "red.summary.json").read_text()),
            thermo_rows((tmp_path / "log.lammps").read_text()))


@pytest.mark.mpi
def test_reducers_match_numpy_on_one_two_and_four_ranks(tmp_path, model):
    """The pair cutoff (8 Å) covers corr's 6 Å, so its pairs come from LAMMPS's half
    list (newton on: a pair with a ghost is in one rank's list; off: in both); with
    'neighbors binning' from the plugin's own binning: all equal brute force."""
    results = {}
    cases = ((1, "", "on"), (2, "", "on"), (4, "", "on"), (2, "", "off"), (2, "neighbors binning", "on"))
    for nprocs, extra, newton in cases:  # 4 ranks oversubscribe this 2-core machine: fine
        directory = tmp_path / f"np{nprocs}{extra.replace(' ', '_')}_newton_{newton}"
        directory.mkdir()
        summary, rows = run(directory, model, nprocs, extra, newton)
        note = "corr pairs from its own binning" if extra else "corr pairs from LAMMPS's half neighbor list"
        assert note in (directory / "log.lammps").read_text()
        frames = list(read_dump(directory / "dump.lc"))
        lam = np.array([f.columns["f_lc"] for f in frames])  # [evaluation, atom]
        types = frames[0].types
        assert summary["evaluations"] == len(frames) == 41  # >= 32: a blocking error exists
        assert summary["lambda_pred"]["value"] == pytest.approx(lam.mean(axis=1).mean(), rel=1e-10)
        assert summary["lambda_std"] == pytest.approx(lam.std(), rel=1e-9)
        assert summary["species"]["PF6"]["mean"] == pytest.approx(lam[:, types == 2].mean(), rel=1e-10)
        running = np.cumsum(lam.mean(axis=1)) / np.arange(1, len(frames) + 1)
        np.testing.assert_allclose([r[2] for r in rows], running, rtol=1e-8)
        np.testing.assert_allclose(rows[-1][4], lam.std(), rtol=1e-8)
        assert summary["lambda_pred"]["stderr"] == pytest.approx(rows[-1][3], rel=1e-8)
        reducers = load(directory / "red.reduce.npz")[0]
        for s, t in enumerate((1, 2)):
            counts, _ = np.histogram(lam[:, types == t], bins=np.linspace(-3, 3, 13))
            np.testing.assert_array_equal(reducers["histogram"].counts[s, 1:-1], counts)
        mu = np.array([lam[:, types == t].mean() for t in (1, 2)])
        corr = reducers["time_correlation"].correlation(mu, normalize=False)
        for s, t in enumerate((1, 2)):
            d = lam[:, types == t] - mu[s]
            for k in range(4):
                assert corr[s, k] == pytest.approx((d[: len(d) - k] * d[k:]).mean(), rel=1e-9)
        # spatial correlation by brute force over all ordered pairs (minimum image)
        sums = np.zeros((4, 2, 2, 6))
        for frame in frames:
            x, f = frame.positions(), frame.columns["f_lc"]
            s_idx = frame.types - 1
            d = x[None, :, :] - x[:, None, :]
            d -= 26.0 * np.round(d / 26.0)
            r = np.linalg.norm(d, axis=2)
            i, j = np.nonzero((r < 6.0) & ~np.eye(len(x), dtype=bool))
            b = (r[i, j] / 6.0 * 6).astype(int)
            for k, w in enumerate((np.ones(len(i)), f[i], f[j], f[i] * f[j])):
                np.add.at(sums[k], (s_idx[i], s_idx[j], b), w)
        np.testing.assert_allclose(reducers["pair_correlation"].sums, sums, rtol=1e-9, atol=1e-12)
        results[(nprocs, extra, newton)] = reducers
    # create_atoms numbers atoms differently on 1 and 2 ranks, so the per-ID
    # histories differ; every accumulated sum must agree.
    for key in list(results)[1:]:
        for name, reducer in results[(1, "", "on")].items():
            for part, value in reducer.state().items():
                if part.startswith("ions/"):
                    continue  # per-ID state; IDs differ with the rank count
                np.testing.assert_allclose(results[key][name].state()[part], value, rtol=1e-10,
                                           err_msg=f"{key}: {name}/{part}")


def test_corr_beyond_ghost_reach_is_refused(tmp_path, model):
    proc = run_lmp(tmp_path, System(model=model, steps=0, fix_extra="corr 9 10").input_text(), check=False)
    assert proc.returncode != 0
    assert "corr RMAX 9 Å exceeds the ghost atom reach 8 Å" in proc.stdout


def test_every_needs_file(tmp_path, model):
    proc = run_lmp(tmp_path, System(model=model, steps=0, fix_extra="every 5").input_text(), check=False)
    assert proc.returncode != 0 and "'every' sets how often the 'file' is written" in proc.stdout


def test_split_run_with_restart_equals_one_run(tmp_path, model):
    """100 + 100 steps through write_restart/read_restart give the reducer files of
    200 steps in one run (deterministic NVE; each step counted once)."""
    fix = f"fix lc all localcond 5 {model} types Li PF6 file red hist -3 3 12 tcorr 3 corr 6 6 eh 4 5 298"

    def system(steps):
        return System(model=model, steps=steps, nevery=5, box=26.0, n_per_type=40,
                      fix_extra="file red hist -3 3 12 tcorr 3 corr 6 6 eh 4 5 298", deterministic=True)

    whole = tmp_path / "whole"
    first = tmp_path / "first"
    second = tmp_path / "second"
    for d in (whole, first, second):
        d.mkdir()
    run_lmp(whole, system(200).input_text())
    run_lmp(first, system(100).input_text() + "write_restart state.restart\n")
    run_lmp(second, "\n".join([
        f"read_restart {first / 'state.restart'}", "pair_style lj/cut/coul/cut 8.0",
        "pair_coeff * * 0.1 2.5", "dielectric 10", "fix nve all nve", fix, "run 100"]) + "\n")
    a, _ = load(whole / "red.reduce.npz")
    b, _ = load(second / "red.reduce.npz")
    assert a["mean_series"].n[0] == b["mean_series"].n[0] == 41
    for name in a:
        for key, value in a[name].state().items():
            np.testing.assert_allclose(b[name].state()[key], value, rtol=1e-7, atol=1e-10,
                                       err_msg=f"{name}/{key}")


def test_restart_with_another_group_is_refused(tmp_path, model):
    first = tmp_path / "first"
    first.mkdir()
    run_lmp(first, System(model=model, steps=10, fix_extra="file red").input_text()
            + "write_restart state.restart\n")
    text = "\n".join([f"read_restart {first / 'state.restart'}", "pair_style lj/cut/coul/cut 8.0",
                      "pair_coeff * * 0.1 2.5", "group cations type 1",
                      f"fix lc cations localcond 10 {model} types Li PF6 file red", "run 0"]) + "\n"
    proc = run_lmp(tmp_path, text, check=False)
    assert proc.returncode != 0
    assert "cannot continue from the restart file" in proc.stdout
    assert "different group ('all' instead of 'cations')" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2])
def test_live_einstein_helfand_equals_offline_conductivity(tmp_path, model, nprocs):
    from localcond.campaign.labels.conductivity import Settings, accumulate, analyse

    system = System(model=model, steps=300, nevery=10, box=26.0, n_per_type=40,
                    fix_extra="file red eh 6 5 298", deterministic=True)
    text = system.input_text().replace("id type q x y z f_lc", "id type q xu yu zu f_lc")
    text = text.replace("thermo_style custom step temp f_lc[1] f_lc[2]",
                        "thermo_style custom step f_lc[6] f_lc[7] f_lc[8] f_lc[9]")
    run_lmp(tmp_path, text, nprocs=nprocs)
    live = json.loads((tmp_path / "red.summary.json").read_text())["einstein_helfand"]
    rows = thermo_rows((tmp_path / "log.lammps").read_text())
    for lag in range(1, 7):
        tau = lag * 10 * 2.0 / 1000  # ps
        settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=tau, max_lag_ps=tau)
        offline = analyse(accumulate([tmp_path / "dump.lc"], settings), settings)
        assert live["tau_ps"][lag - 1] == pytest.approx(tau, rel=1e-12)
        assert live["molar_conductivity"][lag - 1] == pytest.approx(
            offline["molar_conductivity"]["value"], rel=1e-9)
        assert live["nernst_einstein"][lag - 1] == pytest.approx(offline["nernst_einstein"]["value"], rel=1e-9)
        assert live["species_share"]["Li"][lag - 1] == pytest.approx(
            offline["species_share_of_conductivity"]["1"]["value"], rel=1e-8)
    # f_lc[6]-[8]: at the longest lag whose error is determined, not the single-origin last one
    k = live["tau_ps"].index(live["vector_tau_ps"])
    assert k == max(j for j, e in enumerate(live["stderr"]) if e is not None) and k < len(live["tau_ps"]) - 1
    assert rows[-1][1] == pytest.approx(live["molar_conductivity"][k], rel=1e-8)
    assert rows[-1][2] == pytest.approx(live["stderr"][k], rel=1e-8)
    assert rows[-1][3] == pytest.approx(live["species_share"]["Li"][k], rel=1e-8)


def test_ladder_lags_against_offline_conductivity(tmp_path, model):
    """eh 40: lags beyond 8 evaluations are on the multiple-tau ladder. Λ_EH there is
    still exact (the collective dipole keeps every origin); Λ_NE uses every 2^level-th
    origin at the ladder's level l, so it agrees with the all-origin estimate within
    its statistical error (measured: 0.2-0.9 % apart, errors 2.4-3.2 %)."""
    from localcond.campaign.labels.conductivity import Settings, accumulate, analyse

    system = System(model=model, steps=1000, nevery=10, box=26.0, n_per_type=40,
                    fix_extra="file red eh 40 10 298", deterministic=True)
    run_lmp(tmp_path, system.input_text().replace("id type q x y z f_lc", "id type q xu yu zu f_lc"))
    live = json.loads((tmp_path / "red.summary.json").read_text())["einstein_helfand"]
    assert live["lags"] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40]
    for k in (8, 12, 16):  # lags 10, 20, 40 evaluations
        lag = live["lags"][k]
        tau = lag * 10 * 2.0 / 1000
        settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=tau, max_lag_ps=tau)
        offline = analyse(accumulate([tmp_path / "dump.lc"], settings), settings)
        assert live["molar_conductivity"][k] == pytest.approx(offline["molar_conductivity"]["value"], rel=1e-9)
        assert live["nernst_einstein"][k] == pytest.approx(offline["nernst_einstein"]["value"], rel=0.05)


@pytest.mark.mpi
@pytest.mark.parametrize("validated", [False, True])
def test_prediction_share_only_from_a_model_whose_split_was_validated(tmp_path, validated):
    """f_ID[9], the first species' share of Λ_pred: NaN with one warning for a model whose
    metadata does not certify its species split; otherwise the share computed from
    `localcond predict`'s λ on the dumped frames (every evaluation is dumped)."""
    from dataclasses import replace

    from localcond.engine.predict import predict_dump

    module, metadata = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    if validated:
        metadata = replace(metadata, validation={"species_share": {
            "validated": True, "how": "test: certified by hand, not a physical validation"}})
    model = str(save_model(module, metadata, tmp_path / "ref.pt"))
    system = System(model=model, steps=200, nevery=10, box=26.0, n_per_type=40, deterministic=True,
                    fix_extra="file red")
    text = system.input_text().replace("thermo_style custom step temp f_lc[1] f_lc[2]",
                                       "thermo_style custom step f_lc[3] f_lc[9]")
    run_lmp(tmp_path, text, nprocs=2)
    log = (tmp_path / "log.lammps").read_text()
    rows = thermo_rows(log)
    warning = "WARNING: f_ID[9] (the share of Lambda_pred carried by species Li) is NaN"
    summary = json.loads((tmp_path / "red.summary.json").read_text())
    if not validated:
        assert log.count(warning) == 1
        assert all(np.isnan(row[2]) for row in rows)
        return
    assert warning not in log
    offline = predict_dump(model, tmp_path / "dump.lc", ["Li", "PF6"])
    cation = offline.types == 1
    share = offline.lam[:, cation].sum() / offline.lam.sum()
    assert len(offline.timesteps) == len(rows) == 21
    assert rows[-1][2] == pytest.approx(share, rel=1e-9)
    assert rows[-1][1] == pytest.approx(offline.lam.mean(axis=1).mean(), rel=1e-9)
    assert summary["lambda_pred"]["value"] == pytest.approx(rows[-1][1], rel=1e-12)
