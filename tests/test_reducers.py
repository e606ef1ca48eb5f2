"""Reducers against plain numpy, split/merge invariance, save/load, mpirun allreduce."""

import subprocess
import sys

import numpy as np
import pytest

from helpers import MPIRUN
from localcond.errors import LocalcondError
from localcond.engine.reducers.blocking import BlockingError
from localcond.engine.reducers.histogram import Histogram
from localcond.engine.reducers.moments import RunningMoments
from localcond.engine.reducers.spatial import PairCorrelation
from localcond.engine.reducers.store import load, save
from localcond.engine.reducers.timecorr import TimeCorrelation

rng = np.random.default_rng(42)


def test_moments_from_sums_of_a_batch_split_over_ranks():
    """What the fix does with its ions spread over MPI ranks: each rank's batch sums
    about the (replicated) running mean, added up, enter every rank's moments alike.
    Values 10^4 spreads from zero: the centring keeps the variance exact."""
    local = np.random.default_rng(7)
    values = local.normal(1e4, 1.0, (20, 600))
    groups = local.integers(0, 2, 600)
    ranks = np.array_split(np.arange(600), 3)
    replicated = RunningMoments(2)
    for row in values:
        parts = [replicated.batch_sums(row[r], groups[r]) for r in ranks]
        replicated.add_sums(*(sum(p[k] for p in parts) for k in range(3)))
    for g in range(2):
        sel = values[:, groups == g]
        assert replicated.count[g] == sel.size
        assert replicated.mean[g] == pytest.approx(sel.mean(), rel=1e-14)
        assert replicated.variance()[g] == pytest.approx(sel.var(), rel=1e-7)


def test_moments_match_numpy_and_do_not_depend_on_batches():
    values = rng.normal(3.0, 2.0, 1000)
    groups = rng.integers(0, 3, 1000)
    whole = RunningMoments(3)
    whole.update(values, groups)
    parts = [RunningMoments(3) for _ in range(4)]
    for part, chunk in zip(parts, np.array_split(np.arange(1000), 4)):
        for sub in np.array_split(chunk, 3):
            part.update(values[sub], groups[sub])
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    for g in range(3):
        sel = values[groups == g]
        for r in (whole, merged):
            assert r.count[g] == sel.size
            assert r.mean[g] == pytest.approx(sel.mean(), rel=1e-12)
            assert r.variance()[g] == pytest.approx(sel.var(), rel=1e-10)
    n, mean, var = merged.total()
    assert (n, mean) == (1000, pytest.approx(values.mean(), rel=1e-12))
    assert var == pytest.approx(values.var(), rel=1e-10)


def test_blocking_error_of_ar1_series():
    """AR(1) with φ = 0.9: the standard error of the mean is σ_x √((1+φ)/(1−φ)/n)
    asymptotically; the blocking estimate must find it, the naive one must not."""
    phi, n = 0.9, 2**16
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0]
    for t in range(1, n):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * noise[t]
    reducer = BlockingError()
    for v in x:
        reducer.update(v)
    truth = np.sqrt((1 + phi) / (1 - phi) / n)
    assert reducer.mean() == pytest.approx(x.mean(), abs=1e-12)
    assert reducer.level_errors()[0] == pytest.approx(x.std(ddof=1) / np.sqrt(n), rel=1e-9)
    assert reducer.stderr() == pytest.approx(truth, rel=0.25)
    assert np.isnan(BlockingError().stderr())
    assert reducer.level_errors()[0] < 0.4 * truth


def ar1(phi: float, n: int, generator) -> np.ndarray:
    """A stationary AR(1) series of unit variance (started from its stationary law)."""
    from scipy.signal import lfilter

    e = generator.normal(size=n) * np.sqrt(1 - phi**2)
    e[0] = generator.normal()
    return lfilter([1.0], [1.0, -phi], e)


def variance_of_mean(phi: float, n: int) -> float:
    """Exact Var(x̄) of n consecutive values of that series: (1/n)[1 + 2 Σ_k (1 − k/n) φ^k]."""
    k = np.arange(1, n)
    return (1 + 2 * np.sum((1 - k / n) * phi**k)) / n


def test_blocking_level_statistics_equal_numpy_and_pool_without_straddling():
    """The streamed per-level sums give numpy's variance and lag-1 autocorrelation; two
    series pooled give the statistics of the two, with no lag-1 pair across them."""
    gen = np.random.default_rng(5)
    x, y = ar1(0.7, 300, gen), ar1(0.7, 200, gen) + 0.3
    a, b = BlockingError(), BlockingError()
    for v in x:
        a.update(v)
    for v in y:
        b.update(v)
    n, var, rho = a.level_statistics()
    mu = x.mean()
    assert n[0] == 300 and var[0] == pytest.approx(x.var(), rel=1e-12)
    assert rho[0] == pytest.approx(np.sum((x[:-1] - mu) * (x[1:] - mu)) / 300 / x.var(), rel=1e-10)
    pair_means = 0.5 * (x[0::2] + x[1::2])
    assert var[1] == pytest.approx(pair_means.var(), rel=1e-12)
    a.merge(b)
    n, var, rho = a.level_statistics()
    both = np.concatenate([x, y])
    m = both.mean()
    lag1 = np.sum((x[:-1] - m) * (x[1:] - m)) + np.sum((y[:-1] - m) * (y[1:] - m))
    assert n[0] == 500 and var[0] == pytest.approx(both.var(), rel=1e-12)
    assert rho[0] == pytest.approx(lag1 / 500 / both.var(), rel=1e-10)


def test_blocking_error_is_calibrated_on_ar1_series():
    """1σ coverage of the mean of AR(1) series with known variance of the mean: 68 ± 5 %
    pooled over correlation times from none to ~20 values (300 series each), and the
    error's median within 15 % of the truth at each."""
    gen = np.random.default_rng(11)
    covered, total = 0, 0
    for phi in (0.0, 0.5, 0.8, 0.95):
        n = 4096
        truth = np.sqrt(variance_of_mean(phi, n))
        errors, hits = [], 0
        for _ in range(300):
            x = ar1(phi, n, gen)
            reducer = BlockingError()
            for v in x:
                reducer.update(v)
            err = reducer.stderr()
            assert np.isfinite(err), reducer.why_undetermined()
            errors.append(err)
            hits += abs(x.mean()) <= err
        assert np.median(errors) == pytest.approx(truth, rel=0.15), phi
        assert 0.58 <= hits / 300 <= 0.78, (phi, hits / 300)
        covered, total = covered + hits, total + 300
    assert 0.63 <= covered / total <= 0.73


def test_blocking_error_is_nan_with_a_reason_when_the_run_is_too_short():
    """A series correlated over ~2000 values, 1024 long: no level with 16 uncorrelated
    blocks exists, so the error is NaN and the reason says to run longer; a short
    uncorrelated series has an error."""
    gen = np.random.default_rng(3)
    reducer = BlockingError()
    for v in ar1(0.9995, 1024, gen):
        reducer.update(v)
    assert np.isnan(reducer.stderr())
    assert "run longer" in reducer.why_undetermined() or "whole length" in reducer.why_undetermined()
    short = BlockingError()
    for v in gen.normal(size=8):
        short.update(v)
    assert np.isnan(short.stderr()) and "needs at least 16" in short.why_undetermined()
    fine = BlockingError()
    for v in gen.normal(size=64):
        fine.update(v)
    assert np.isfinite(fine.stderr()) and fine.why_undetermined() is None


def test_histogram_matches_numpy():
    values = rng.normal(size=500)
    groups = rng.integers(0, 2, 500)
    h = Histogram(-2.0, 2.0, 16, 2)
    h.update(values, groups)
    for g in range(2):
        sel = values[groups == g]
        expected, _ = np.histogram(sel, bins=h.edges)
        np.testing.assert_array_equal(h.counts[g, 1:-1], expected)
        assert h.counts[g, 0] == (sel < -2).sum() and h.counts[g, -1] == (sel > 2).sum()
    with pytest.raises(ValueError, match="hi > lo"):
        Histogram(1.0, 1.0, 4, 1)
    with pytest.raises(ValueError, match="at least one bin"):
        Histogram(0.0, 1.0, 0, 1)


def test_pair_correlation_matches_brute_force():
    n = 60
    lam = rng.normal(size=n) + np.where(np.arange(n) < 30, 1.0, -1.0)
    species = (np.arange(n) >= 30).astype(int)
    charges = np.array([1.0, -1.0])
    pos = rng.random((n, 3)) * 10
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    r = np.linalg.norm(pos[j] - pos[i], axis=1)
    pc = PairCorrelation(6.0, 6, 2)
    half = len(i) // 2
    pc.update(lam[i[:half]], lam[j[:half]], species[i[:half]], species[j[:half]], r[:half])
    other = PairCorrelation(6.0, 6, 2)
    other.update(lam[i[half:]], lam[j[half:]], species[i[half:]], species[j[half:]], r[half:])
    pc.merge(other)
    mu = np.array([lam[species == 0].mean(), lam[species == 1].mean()])
    cov = pc.covariance(mu)
    classes = pc.by_charge_class(mu, charges)
    delta = lam - mu[species]
    for b in range(6):
        in_bin = (r >= b) & (r < b + 1)
        for a in range(2):
            for c in range(2):
                sel = in_bin & (species[i] == a) & (species[j] == c)
                if not sel.any():
                    assert np.isnan(cov[a, c, b])
                    continue
                assert cov[a, c, b] == pytest.approx((delta[i[sel]] * delta[j[sel]]).mean(), rel=1e-9, abs=1e-12)
        unlike = in_bin & (species[i] != species[j])
        if not unlike.any():
            continue
        assert classes["unlike"][b] == pytest.approx((delta[i[unlike]] * delta[j[unlike]]).mean(), rel=1e-9, abs=1e-12)


def test_time_correlation_tracks_ids_across_owners():
    """Ions hop between two 'ranks' (owner sets) every step; merging the two
    reducers gives the autocorrelation of the full series, computed by numpy."""
    n_ions, steps, nlags = 8, 40, 5
    series = rng.normal(size=(steps, n_ions)).cumsum(axis=0) * 0.1 + rng.normal(size=n_ions)
    species = np.arange(n_ions) % 2
    single = TimeCorrelation(nlags, 2)
    for t in range(steps):
        single.update(np.arange(1, n_ions + 1), species, series[t])
    mu = np.array([series[:, species == s].mean() for s in range(2)])
    c = single.correlation(mu, normalize=False)
    for s in range(2):
        cols = series[:, species == s] - mu[s]
        for k in range(nlags):
            expected = (cols[: steps - k] * cols[k:]).mean()
            assert c[s, k] == pytest.approx(expected, rel=1e-10)
    # the same with ownership by ID: rank r owns IDs with id % 2 == r
    ranks = [TimeCorrelation(nlags, 2) for _ in range(2)]
    ids = np.arange(1, n_ions + 1)
    for t in range(steps):
        for r in range(2):
            mine = ids % 2 == r
            ranks[r].update(ids[mine], species[mine], series[t, mine])
    ranks[0].merge(ranks[1])
    np.testing.assert_allclose(ranks[0].correlation(mu, normalize=False), c, rtol=1e-12)


def test_save_load_round_trip_and_continuation(tmp_path):
    """A run split in two with save/load in between equals the run in one piece."""
    values = rng.normal(size=(30, 10))
    groups = np.arange(10) % 2

    def fresh():
        return {"moments": RunningMoments(2), "blocking": BlockingError(4),
                "hist": Histogram(-3, 3, 12, 2), "tcorr": TimeCorrelation(4, 2)}

    def feed(reducers, rows):
        for row in rows:
            reducers["moments"].update(row, groups)
            reducers["blocking"].update(row.mean())
            reducers["hist"].update(row, groups)
            reducers["tcorr"].update(np.arange(10), groups, row)

    whole = fresh()
    feed(whole, values)
    first = fresh()
    feed(first, values[:13])
    save(tmp_path / "state.npz", first, {"model": "x"})
    second, meta = load(tmp_path / "state.npz")
    assert meta == {"model": "x"}
    feed(second, values[13:])
    for name in whole:
        a, b = whole[name].state(), second[name].state()
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-12, err_msg=f"{name}/{key}")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(LocalcondError, match="not a localcond reducer file"):
        load(tmp_path / "junk.npz")


MPI_SCRIPT = r"""
import sys
import numpy as np
from mpi4py import MPI
from localcond.engine.reducers.moments import RunningMoments
from localcond.engine.reducers.histogram import Histogram
from localcond.engine.reducers.base import allreduce
from localcond.engine.reducers.store import save
comm = MPI.COMM_WORLD
values = np.random.default_rng(0).normal(size=400)
groups = np.arange(400) % 3
mine = np.arange(400) % comm.size == comm.rank
m, h = RunningMoments(3), Histogram(-3, 3, 10, 3)
m.update(values[mine], groups[mine])
h.update(values[mine], groups[mine])
m, h = allreduce(m, comm), allreduce(h, comm)
if comm.rank == 0:
    save(sys.argv[1], {"m": m, "h": h}, {"ranks": comm.size})
"""


@pytest.mark.mpi
def test_allreduce_over_ranks_equals_serial(tmp_path):
    script = tmp_path / "reduce.py"
    script.write_text(MPI_SCRIPT)
    results = {}
    for np_ in (1, 2):
        out = tmp_path / f"r{np_}.npz"
        cmd = [sys.executable, str(script), str(out)]
        if np_ > 1:
            cmd = [MPIRUN, "-np", str(np_)] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results[np_] = load(out)[0]
    for name in ("m", "h"):
        for key, value in results[1][name].state().items():
            np.testing.assert_allclose(results[2][name].state()[key], value, rtol=1e-12)


def test_blocking_chi2_quantiles_are_the_tabulated_ones():
    """Jonsson's test reads the 99 % quantiles of χ² (scipy.special.chdtri, imported with the
    reducers): equal to scipy.stats' and to tables (6.635 for 1 degree of freedom, 15.086
    for 5, 37.566 for 20)."""
    from scipy.stats import chi2

    from localcond.engine.reducers.blocking import _chi2_quantiles

    q = _chi2_quantiles(64)
    np.testing.assert_allclose(q, chi2.ppf(0.99, np.arange(1, 65)), rtol=1e-12)
    np.testing.assert_allclose(q[[0, 4, 19]], [6.635, 15.086, 37.566], atol=5e-4)


def test_a_file_with_every_reducer_kind_loads_in_a_fresh_process(tmp_path):
    """store.load registers the kinds it reads by importing their modules: a file holding
    the ensemble members' means (an ensemble model's run) loads in a process that
    imported nothing else, with the members' Λ_pred as written."""
    from localcond.engine.reducers import store
    from localcond.engine.reducers.members import MemberMeans

    members = MemberMeans(3)
    members.update(np.array([1.0, 2.0, 4.0]))
    members.update(np.array([3.0, 2.0, 0.0]))
    path = store.save(tmp_path / "r.reduce.npz", {"members": members}, {})
    code = ("import sys; from localcond.engine.reducers.store import load; "
            f"r, _ = load({str(path)!r}); print(*r['members'].member_lambda())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [float(v) for v in out.stdout.split()] == [2.0, 2.0, 2.0]
