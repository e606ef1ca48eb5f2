"""``localcond reduce``: files of one system combine exactly (two halves of a run
give the numbers of the whole where pairs do not span the cut), systems stay
apart, bad files are named and leave nothing behind, figures show the
summary's numbers with units, and two MPI ranks give what one gives."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import MPIRUN
from localcond.cli.reduce import reduce_files
from localcond.errors import LocalcondError
from localcond.postrun import figures
from localcond.engine.reducers.reducer_set import ReducerOptions, ReducerSet
from localcond.engine.reducers.timeline import Evaluation

OPTIONS = {"hist": [-3, 3, 12], "tcorr": 5, "corr": [6.0, 4], "eh": [6, 4, 298.0]}
N_IONS = 10


def trajectory(steps: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    species = np.arange(N_IONS) % 2
    charges = np.where(species == 0, 1.0, -1.0)
    x = rng.normal(size=(steps, N_IONS, 3)).cumsum(axis=0)
    lam = rng.normal(size=(steps, N_IONS)) + species
    pairs = rng.integers(0, 5, size=(steps, 4, 2, 2, 4)).astype(float)
    pairs[:, 1:] *= rng.normal(size=(steps, 3, 2, 2, 4))
    return species, charges, x, lam, pairs


def write_run(path_prefix, frames, options=OPTIONS, first_step=0, model_id="m1"):
    species, charges, x, lam, pairs = frames
    red = ReducerSet(ReducerOptions.from_dict(options), ["A", "B"], [1.0, -1.0])
    for k in range(len(lam)):
        step = 10 * (first_step + k)
        red.observe(Evaluation(step, 0.002, 10, "run"), lam[k], species, np.arange(1, N_IONS + 1), charges,
                    x[k], pairs[k] if "corr" in options else None)
    red.write(str(path_prefix), {"source": "test", "model_id": model_id}, {}, "test")
    return path_prefix.parent / (path_prefix.name + ".reduce.npz")


def cut(frames, a, b):
    return tuple(f[a:b] if f.ndim > 1 else f for f in frames)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    frames = trajectory(64)
    whole = write_run(root / "whole", frames)
    first = write_run(root / "first", cut(frames, 0, 32))
    second = write_run(root / "second", cut(frames, 32, 64), first_step=32)
    return {"whole": whole, "first": first, "second": second, "root": root}


def system_of(out_dir):
    report = json.loads((out_dir / "summary.json").read_text())
    (system,) = report["systems"]
    return system


def test_two_halves_give_the_whole(runs, tmp_path):
    reduce_files([str(runs["whole"])], tmp_path / "whole")
    reduce_files([str(runs["first"]), str(runs["second"])], tmp_path / "halves")
    whole, halves = system_of(tmp_path / "whole"), system_of(tmp_path / "halves")
    assert halves["replicas"] == 2 and halves["evaluations"] == whole["evaluations"] == 64
    # instantaneous statistics add exactly; the blocking error pools the two series without the
    # one lag-1 pair per level that spans the cut (tests/test_reducers.py checks the pooled
    # level statistics against numpy), so it is close to the whole run's, not equal
    assert halves["lambda_pred"]["value"] == pytest.approx(whole["lambda_pred"]["value"], rel=1e-12)
    assert halves["lambda_pred"]["stderr"] == pytest.approx(whole["lambda_pred"]["stderr"], rel=0.05)
    assert halves["lambda_std"] == pytest.approx(whole["lambda_std"], rel=1e-12)
    assert halves["curves"]["lambda_distribution"] == whole["curves"]["lambda_distribution"]
    np.testing.assert_allclose(halves["curves"]["spatial_correlation"]["like"],
                               whole["curves"]["spatial_correlation"]["like"], rtol=1e-12)
    # errors of the spatial correlation from the scatter of the two files' own curves: for two
    # values the standard error of their mean is |a - b| / 2
    assert whole["curves"]["spatial_correlation"]["like_stderr"] is None
    reduce_files([str(runs["first"])], tmp_path / "first")
    reduce_files([str(runs["second"])], tmp_path / "second")
    a = system_of(tmp_path / "first")["curves"]["spatial_correlation"]["unlike"]
    b = system_of(tmp_path / "second")["curves"]["spatial_correlation"]["unlike"]
    np.testing.assert_allclose(halves["curves"]["spatial_correlation"]["unlike_stderr"],
                               np.abs(np.array(a) - np.array(b)) / 2, rtol=1e-10)
    # time correlations: each half keeps its own pairs; only those spanning the cut are missing
    for lag, n_whole, n_halves in zip(whole["einstein_helfand"]["lags"], whole["einstein_helfand"]["origins"],
                                      halves["einstein_helfand"]["origins"]):
        assert n_whole - n_halves == lag


def test_systems_stay_apart_and_bad_files_are_named(runs, tmp_path):
    other = write_run(runs["root"] / "other", trajectory(8), model_id="m2")
    reduce_files([str(runs["whole"]), str(other)], tmp_path / "two")
    report = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert len(report["systems"]) == 2
    junk = tmp_path / "junk.reduce.npz"
    junk.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LocalcondError, match="junk.reduce.npz"):
        reduce_files([str(runs["whole"]), str(junk)], tmp_path / "bad")
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_figures_show_the_summary_with_units(runs, tmp_path):
    reduce_files([str(runs["whole"])], tmp_path)
    s = system_of(tmp_path)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 5  # five per system; no Λ_pred against Λ_EH: too short for a diffusive window
    assert s["lambda_eh"]["value"] is None and "no diffusive window yet" in s["lambda_eh"]["note"]
    fig = figures.lambda_distribution(s)
    (ax,) = fig.axes
    assert "S cm$^2$ mol$^{-1}$" in ax.get_xlabel()
    assert [line.get_label() for line in ax.lines] == ["A", "B"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), s["curves"]["lambda_distribution"]["density"]["B"])
    fig = figures.spatial_correlation(s)
    labels = [line.get_label() for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert labels == ["like charges", "unlike charges"] and "(Å)" in fig.axes[0].get_xlabel()
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), s["curves"]["spatial_correlation"]["unlike"])
    fig = figures.einstein_helfand(s)
    top = fig.axes[0]
    np.testing.assert_allclose(top.lines[0].get_ydata(), s["einstein_helfand"]["molar_conductivity"])
    assert "(ps)" in fig.axes[1].get_xlabel()
    fig = figures.convergence(s)
    (trace,) = s["curves"]["convergence"]
    assert trace["evaluations"] == [1, 2, 4, 8, 16, 32, 50, 64]  # powers of two and every 50
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata()[-1], s["lambda_pred"]["value"], rtol=1e-12)
    assert "evaluations" in fig.axes[-1].get_xlabel()
    fig = figures.time_autocorrelation(s)
    assert "(ps)" in fig.axes[0].get_xlabel() and len(fig.axes[0].lines) == 3  # two species and the zero line


def test_lambda_eh_is_the_diffusive_window_never_the_last_lag(tmp_path, capsys):
    """The summary's, the printout's and the figure's Λ_EH are the diffusive window's
    slope-form value, prefactor (⟨|ΔM|²⟩(2t) − ⟨|ΔM|²⟩(t)) / t, here from the collective
    dipole by brute force over all origins. They used to be the ladder's last lag, from
    one origin with no error."""
    from localcond.cli.reduce import _cmd_reduce, register
    from localcond.units import molar_conductivity_prefactor
    import argparse

    frames = trajectory(1500, seed=9)
    path = write_run(tmp_path / "long", frames, options={"eh": [16, 4, 298.0]})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    _cmd_reduce(parser.parse_args(["reduce", str(path), "--out", str(tmp_path / "out"), "--reference", "1e5", "2e4"]))
    s = system_of(tmp_path / "out")
    eh = s["lambda_eh"]
    lo, hi = eh["tau_window_ps"]
    species, charges, x, _, _ = frames
    m = (charges[None, :, None] * x).sum(axis=1)

    def m2(lag):
        return ((m[lag:] - m[:-lag]) ** 2).sum(axis=1).mean()

    t = int(round(lo / 0.02))
    assert int(round(hi / 0.02)) == 2 * t
    expected = molar_conductivity_prefactor(298.0, N_IONS / 2) * (m2(2 * t) - m2(t)) / lo
    assert eh["value"] == pytest.approx(expected, rel=1e-9)
    assert eh["stderr"] > 0 and hi < s["einstein_helfand"]["tau_ps"][-1]
    printed = capsys.readouterr().out
    assert f"Lambda_EH(window {lo:g}-{hi:g} ps) = {eh['value']:.4g}" in printed
    assert "longest lag" not in printed
    fig = figures.pred_versus_eh([s])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [eh["value"]])
    fig = figures.convergence(s, {"value": 1e5, "stderr": 2e4})
    assert [ln.get_label() for ln in fig.axes[1].lines][-1] == "reference"
    (trace,) = s["curves"]["convergence"]
    ok = [k for k, v in enumerate(trace["lambda_eh"]) if v is not None]
    assert ok and all(trace["lambda_eh_stderr"][k] is not None for k in ok)
    assert (tmp_path / "out" / "lambda_pred_versus_lambda_eh.png").exists()


@pytest.mark.mpi
def test_two_ranks_equal_one(runs, tmp_path):
    files = [str(runs[k]) for k in ("first", "second", "whole")]
    reduce_files(files, tmp_path / "one")
    proc = subprocess.run([MPIRUN, "-np", "2", sys.executable, "-m", "localcond", "reduce", *files,
                           "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one, two = system_of(tmp_path / "one"), system_of(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["ranks"] == 2
    assert two["replicas"] == 3
    for key in ("value", "stderr"):
        assert two["lambda_pred"][key] == pytest.approx(one["lambda_pred"][key], rel=1e-12)
    np.testing.assert_allclose(two["einstein_helfand"]["molar_conductivity"],
                               one["einstein_helfand"]["molar_conductivity"], rtol=1e-12)


def test_diffusive_window_on_a_random_walk_finds_the_analytic_conductivity(tmp_path):
    """Independent random walks (variance 1 Å² per axis per evaluation): ⟨|ΔM|²⟩ = 3 τ Σ q²
    exactly in expectation, so the window rule passes and its Λ equals the analytic
    prefactor · 3 Σ q² / interval within its error."""
    from localcond.units import molar_conductivity_prefactor

    n, steps = 20, 3000
    rng = np.random.default_rng(11)
    species = np.arange(n) % 2
    charges = np.where(species == 0, 1.0, -1.0)
    red = ReducerSet(ReducerOptions.from_dict({"eh": [64, 100, 298.0]}), ["A", "B"], [1.0, -1.0])
    x = np.zeros((n, 3))
    for k in range(steps):
        x = x + rng.normal(size=(n, 3))
        red.observe(Evaluation(10 * k, 0.002, 10, "run"), np.zeros(n), species, np.arange(1, n + 1), charges, x)
    red.write(str(tmp_path / "walk"), {"source": "test", "model_id": "walk"}, {}, "test")
    reduce_files([str(tmp_path / "walk.reduce.npz")], tmp_path / "out")
    window = system_of(tmp_path / "out")["einstein_helfand"]["diffusive_window"]
    expected = molar_conductivity_prefactor(298.0, n / 2) * 3 * n / 0.02  # Σ q² = n, interval 0.02 ps
    assert window["passed"]
    assert abs(window["value"] - expected) < 3 * window["stderr"]


def test_diffusive_window_error_matches_the_scatter_over_independent_runs():
    """Calibration against brute force: 24 independent random walks, with live blocks of
    only 4 evaluations against lags up to 64. A window's block error must match
    the scatter of its Λ over the runs (0.8 here; 0.5-1.6 accepted). Blocks shorter than
    the lag share displacement paths: unmerged, they understated the error of the longest
    window (lags 32-64) 3× (0.32). They are now merged to 4 × the longest lag tested, as
    offline."""
    from localcond.postrun.runs import _diffusive_window

    n, steps = 8, 2000
    rng = np.random.default_rng(5)
    species = np.arange(n) % 2
    charges = np.where(species == 0, 1.0, -1.0)
    values, errors = [], []
    for _ in range(24):
        red = ReducerSet(ReducerOptions.from_dict({"eh": [64, 4, 298.0]}), ["A", "B"], [1.0, -1.0])
        x = np.zeros((n, 3))
        for k in range(steps):
            x = x + rng.normal(size=(n, 3))
            red.observe(Evaluation(10 * k, 0.002, 10, "run"), np.zeros(n), species, np.arange(1, n + 1), charges, x)
        window = _diffusive_window(red.reducers["eh_collective"], red)
        assert window is not None
        first = next(r for r in window["windows"] if r["tau_window_ps"] == [0.64, 1.28])  # lags 32-64, blocks of 4
        values.append(first["value"])
        errors.append(first["stderr"])
    ratio = np.sqrt(np.mean(np.square(errors))) / np.std(values, ddof=1)
    assert 0.5 < ratio < 1.6, ratio  # unmerged blocks: 0.32
