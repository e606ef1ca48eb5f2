"""The live statistics' time axis: multiple-tau lags checked against brute force
and hand-solvable motion, and the rules that keep histories from spanning a
discontinuity (minimize, reset_timestep, rerun, split runs, timestep changes)."""

import numpy as np
import pytest

from localcond.engine.reducers.eh_live import CollectiveDisplacement, SelfDisplacement, eh_curves
from localcond.engine.reducers.ladder import Ladder
from localcond.engine.reducers.reducer_set import ReducerOptions, ReducerSet
from localcond.engine.reducers.timecorr import TimeCorrelation
from localcond.engine.reducers.timeline import Evaluation, Timeline
from localcond.units import molar_conductivity_prefactor

rng = np.random.default_rng(7)


def test_ladder_lags_by_hand():
    # p = 4: level 0 gives 1..4, level l gives 2^l * (3, 4)
    assert Ladder(20, p=4).lags.tolist() == [1, 2, 3, 4, 6, 8, 12, 16]
    assert Ladder(6).lags.tolist() == [1, 2, 3, 4, 5, 6]  # short: every lag, as before
    assert Ladder(0).lags.tolist() == []
    lags = Ladder(1000).lags
    assert 800 < lags.max() <= 1000 and lags.size < 40
    assert np.all(np.diff(lags) > 0)  # ascending: the reducers take the lags up to k as a prefix
    with pytest.raises(ValueError, match="even"):
        Ladder(10, p=5)


def origins_at(lag: int, p: int, steps: int) -> np.ndarray:
    """The origins a ladder pairs at this lag: every 2^level-th evaluation, where
    level is the lag's level (lag = j 2^level with j <= p, j > p/2 above level 0)."""
    level = 0
    while lag > p << level:
        level += 1
    if level and lag % (1 << level):
        raise ValueError("not a ladder lag")
    return np.arange(0, steps - lag, 1 << level)


def test_self_displacement_is_exact_for_linear_motion():
    """r_i(t) = r0_i + v_i t: every pair gives |v_i|^2 tau^2, whatever the origins."""
    n, steps = 6, 300
    v = rng.normal(size=(n, 3))
    r0 = rng.normal(size=(n, 3))
    species = np.arange(n) % 2
    q = np.where(species == 0, 1.0, -2.0)
    red = SelfDisplacement(200, 2, p=8)
    for t in range(steps):
        red.update(np.arange(n), species, q, r0 + v * t)
    per_pair = red.sums[:, 1] / red.sums[:, 0]  # mean q^2 |dr|^2 per ion of species s
    for s in range(2):
        expected = (q[species == s] ** 2 * (v[species == s] ** 2).sum(axis=1)).mean()
        np.testing.assert_allclose(per_pair[:, s], expected * red.ladder.lags.astype(float) ** 2, rtol=1e-12)


def test_ladder_statistics_equal_brute_force_over_their_origins():
    """Random walks: the self part, the collective part (all origins) and the λ
    autocorrelation equal sums over the same pairs written out by hand."""
    n, steps, p = 5, 260, 8
    species = np.array([0, 1, 0, 1, 1])
    q = np.where(species == 0, 1.0, -1.0)
    x = rng.normal(size=(steps, n, 3)).cumsum(axis=0)
    lam = rng.normal(size=(steps, n)).cumsum(axis=0) * 0.1
    self_part = SelfDisplacement(100, 2, p=p)
    collective = CollectiveDisplacement(100, 2, block=7, p=p)
    tcorr = TimeCorrelation(101, 2, p=p)
    ids = np.array([9, 3, 4, 12, 1])  # unsorted IDs
    for t in range(steps):
        m = np.zeros((2, 3))
        np.add.at(m, species, q[:, None] * x[t])
        collective.update(m)
        self_part.update(ids, species, q, x[t])
        tcorr.update(ids, species, lam[t])
    assert np.array_equal(self_part.ladder.lags, collective.ladder.lags)
    order = np.argsort(ids)  # the reducers' rows
    m_all = (q[None, :, None] * x).sum(axis=1)  # [t, 3]
    for k, lag in enumerate(self_part.ladder.lags):
        t0 = origins_at(int(lag), p, steps)
        dr = x[t0 + lag] - x[t0]
        sq = (dr**2).sum(axis=2)  # [origins, n]
        for s in range(2):
            assert self_part.sums[k, 0, s] == t0.size * (species == s).sum()
            assert self_part.sums[k, 1, s] == pytest.approx((sq[:, species == s]).sum(), rel=1e-12)
        every = np.arange(0, steps - lag)
        dm = m_all[every + lag] - m_all[every]
        assert collective.sums[:, k, 0].sum() == every.size
        assert collective.sums[:, k, 1].sum() == pytest.approx((dm**2).sum(), rel=1e-12)
        blocks = every // 7
        for b in (0, blocks.max()):
            assert collective.sums[b, k, 1] == pytest.approx((dm[blocks == b] ** 2).sum(), rel=1e-12)
        a, c = lam[t0][:, order], lam[t0 + lag][:, order]
        s_rows = species[order]
        for s in range(2):
            assert tcorr.sums[3, s, k + 1] == pytest.approx((a * c)[:, s_rows == s].sum(), rel=1e-12)
            assert tcorr.sums[0, s, k + 1] == t0.size * (s_rows == s).sum()


def test_ladder_statistics_continue_exactly_after_a_restore_and_a_rank_split():
    """Restored from their state mid-history, or split between two ranks and joined
    again, the self displacement and the λ autocorrelation continue as if nothing
    happened (the self part rebuilds its per-evaluation sums of squares from the ring)."""
    n, steps, split = 7, 300, 137
    species = np.arange(n) % 2
    q = np.where(species == 0, 1.0, -1.0)
    ids = np.array([5, 2, 9, 1, 7, 3, 8])
    x = 300.0 + rng.normal(size=(steps, n, 3)).cumsum(axis=0)  # far from the origin
    lam = rng.normal(size=(steps, n))

    def feed(self_part, tcorr, t0, t1):
        for t in range(t0, t1):
            self_part.update(ids, species, q, x[t])
            tcorr.update(ids, species, lam[t])

    whole = (SelfDisplacement(200, 2), TimeCorrelation(201, 2))
    feed(*whole, 0, steps)
    restored = (SelfDisplacement(200, 2), TimeCorrelation(201, 2))
    feed(*restored, 0, split)
    restored = (SelfDisplacement.from_state(restored[0].state()), TimeCorrelation.from_state(restored[1].state()))
    feed(*restored, split, steps)
    joined = (SelfDisplacement(200, 2), TimeCorrelation(201, 2))
    feed(*joined, 0, split)
    parts = [(joined[0].for_rank(r, 2), joined[1].for_rank(r, 2)) for r in range(2)]
    parts[0][0].merge(parts[1][0])
    parts[0][1].merge(parts[1][1])
    joined = parts[0]
    feed(*joined, split, steps)
    for other in (restored, joined):
        np.testing.assert_allclose(other[0].sums, whole[0].sums, rtol=1e-11)
        np.testing.assert_allclose(other[1].sums, whole[1].sums, rtol=1e-12)


def test_eh_curve_errors_are_the_scatter_of_chunks_spanning_two_lags():
    """Λ_EH's error at each lag is the standard deviation (ddof 1) over chunks of
    ⌈2 lag / block⌉ consecutive blocks with origins at that lag (Σ|ΔM|² / Σn per
    chunk), divided by √(their number); NaN below four chunks. The reference here is
    written out directly."""
    collective = CollectiveDisplacement(20, 2, block=5)
    self_part = SelfDisplacement(20, 2)
    x = rng.normal(size=(60, 4, 3)).cumsum(axis=0)
    q = np.array([1.0, -1.0, 1.0, -1.0])
    species = np.array([0, 1, 0, 1])
    for t in range(60):
        m = np.zeros((2, 3))
        np.add.at(m, species, q[:, None] * x[t])
        collective.update(m)
        self_part.update(np.arange(4), species, q, x[t])
    curves = eh_curves(collective, self_part, 0.01, 298.0, 2.0, np.array([2.0, 2.0]))
    prefactor = molar_conductivity_prefactor(298.0, 2.0)
    checked = 0
    for j, (lag, tau) in enumerate(zip(collective.ladder.lags, curves["tau_ps"])):
        n, m2 = collective.sums[:, j, 0], collective.sums[:, j, 1]
        have = [b for b in range(n.size) if n[b] > 0]
        g = max(1, int(np.ceil(2 * lag / 5)))
        chunks = [have[i:i + g] for i in range(0, len(have) - g + 1, g)]
        values = [prefactor * m2[c].sum() / n[c].sum() / tau for c in chunks]
        expected = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) >= 4 else np.nan
        np.testing.assert_allclose(curves["stderr"][j], expected, rtol=1e-12)
        checked += len(values) >= 4
    assert checked >= 3 and np.isnan(curves["stderr"][-1])  # lag 20: 40 origins, 1 chunk of 40


def test_eh_curve_errors_match_the_scatter_over_independent_runs():
    """Calibration against brute force: 300 independent random walks of the collective
    dipole, 400 evaluations each, blocks of 5 origins. At lags 2–4× the block length, the
    scatter of blocks shorter than the lag understated the error by about half. The
    chunked error must match the scatter of Λ_EH over the runs to within 25 %."""
    lag_index = None
    values, errors = [], []
    walk = np.random.default_rng(11)
    for _ in range(300):
        collective = CollectiveDisplacement(20, 1, block=5)
        m = walk.normal(size=(400, 1, 3)).cumsum(axis=0)
        for t in range(400):
            collective.update(m[t])
        curves = eh_curves(collective, None, 0.01, 298.0, 2.0, np.array([2.0]))
        if lag_index is None:
            lag_index = int(np.flatnonzero(collective.ladder.lags == 16)[0])
        values.append(curves["lambda_eh"][lag_index])
        errors.append(curves["stderr"][lag_index])
    ratio = np.sqrt(np.mean(np.square(errors))) / np.std(values, ddof=1)
    assert 0.75 < ratio < 1.25, ratio


def test_vector_reports_lambda_eh_at_the_longest_lag_with_an_error():
    """f_ID[6]/[7] while a run grows: NaN until some lag has four chunks of origins, then
    Λ_EH at the longest such lag, computed here from the collective dipole by brute
    force (all origins), with a finite error. It used to be the ladder's last lag: NaN
    until NLAGS evaluations, then a value from a single origin with no error."""
    n, steps, nlags, block = 6, 120, 40, 5
    x = rng.normal(size=(steps, n, 3)).cumsum(axis=0)
    q = np.array([1.0, -1.0] * 3)
    species = np.array([0, 1] * 3)
    red = ReducerSet(ReducerOptions.from_dict({"eh": [nlags, block, 298.0]}), ["A", "B"], [1.0, -1.0])
    m = (q[:, None, None] * x.transpose(1, 0, 2)).sum(axis=0)  # [steps, 3]
    prefactor = molar_conductivity_prefactor(298.0, 3.0)
    seen_nan = seen_value = 0
    for t in range(steps):
        red.observe(Evaluation(10 * t, 0.002, 10, "run"), np.zeros(n), species, np.arange(1, n + 1), q, x[t])
        out = red.observed()
        if np.isnan(out.lambda_eh):
            assert np.isnan(out.lambda_eh_stderr) and np.isnan(out.eh_tau_ps)
            seen_nan += 1
            continue
        lag = int(round(out.eh_tau_ps / 0.02))
        dm = m[lag:t + 1] - m[:t + 1 - lag]
        assert out.lambda_eh == pytest.approx(prefactor * (dm**2).sum(axis=1).mean() / out.eh_tau_ps, rel=1e-10)
        assert np.isfinite(out.lambda_eh_stderr) and lag < t  # never the single-origin end
        assert (t + 1 - lag) >= 4 * max(1, int(np.ceil(2 * lag / block))) * block - block
        seen_value += 1
    assert seen_nan >= 15 and seen_value >= 60 and out.eh_tau_ps < nlags * 0.02


def run(timeline: Timeline, calls: list[tuple]) -> list:
    out = []
    for step, phase, *rest in calls:
        dt = rest[0] if rest else 0.002
        out.append(timeline.decide(Evaluation(step, dt, 10, phase, rest[1] if len(rest) > 1 else None)))
    return out


def test_timeline_continues_a_run_split_off_the_grid():
    """run 105, run 95: the setup at 105 is off the grid and enters nothing; 100 -> 110
    are 10 steps apart in time, so the history goes on."""
    calls = [(0, "setup")] + [(s, "run") for s in range(10, 101, 10)] + [(105, "setup")] + \
            [(s, "run") for s in range(110, 201, 10)]
    decisions = run(Timeline(), calls)
    off = decisions[11]
    assert not off.count and not off.correlate
    assert [d.restart for d in decisions if d.correlate] == [True] + [False] * 20
    assert sum(d.count for d in decisions) == 21


def test_timeline_breaks_at_minimize_reset_timestep_gap_and_new_timestep():
    t = Timeline()
    d = run(t, [(0, "setup"), (10, "run"), (20, "run")])
    assert [x.restart for x in d] == [True, False, False]
    # minimize between runs: the next run's setup (step 20 again, on the grid) is a new origin
    d = run(t, [(20, "setup", 0.002, "a minimization moved the atoms")])[0]
    assert d.restart and "minimization" in d.note and not d.count
    # reset_timestep 0: the same configuration again at step 0
    d = run(t, [(30, "run"), (0, "setup")])[1]
    assert d.restart and "went back from 30 to 0" in d.note and not d.count
    # a gap (a run without the fix evaluating, or frames missing from a rerun)
    d = run(t, [(10, "run"), (40, "run")])[1]
    assert d.restart and "30 steps passed" in d.note and d.count
    # a new timestep with the same N: the lags would mean another time
    d = run(t, [(50, "run", 0.001)])[0]
    assert d.restart and "timestep changed from 2 fs to 1 fs" in d.note
    with pytest.raises(ValueError, match="cannot be mixed"):
        run(t, [(60, "run", 0.001)])


def test_timeline_rerun_lags_are_the_dump_spacing():
    """rerun of frames every 200 steps with N = 20: setup and end_of_step per frame;
    the lag unit is 200 steps x dt, each configuration counted once."""
    t = Timeline()
    calls = []
    for s in range(0, 1001, 200):
        calls += [(s, "setup"), (s, "run")]
    decisions = run(t, calls)
    assert t.interval_ps == pytest.approx(200 * 0.002)
    assert sum(d.count for d in decisions) == 6
    assert sum(d.correlate for d in decisions) == 6 and sum(d.restart for d in decisions) == 1


def brownian_set(options, steps, stride=1, split=None, n=12):
    """Feed a ReducerSet with random-walk ions evaluated every `stride` steps of 10
    (N = 10); `split` inserts an extra call for a run that ends off the grid."""
    species = np.arange(n) % 2
    q = np.where(species == 0, 1.0, -1.0)
    x = np.random.default_rng(3).normal(size=(steps + 1, n, 3)).cumsum(axis=0)
    lam = np.random.default_rng(4).normal(size=(steps + 1, n))
    red = ReducerSet(ReducerOptions.from_dict(options), ["A", "B"], [1.0, -1.0])
    for k in range(0, steps + 1, stride):
        phase = "setup" if k == 0 else "run"
        red.observe(Evaluation(10 * k, 0.002, 10, phase), lam[k], species, np.arange(1, n + 1), q, x[k])
        if split is not None and k == split:
            # the next run's setup at step 10k + 5: positions of a half step later, off the grid
            red.observe(Evaluation(10 * k + 5, 0.002, 10, "setup"), lam[k] + 1.0, species,
                        np.arange(1, n + 1), q, x[k] + 0.5)
    return red


def test_off_grid_evaluation_changes_nothing():
    """The Λ_EH 89.7 -> 73.4 defect: a run split off the N-grid must give the same
    statistics as one run (instantaneous ones too: the setup re-evaluation is not counted)."""
    options = {"eh": [40, 10, 298.0], "tcorr": 20, "hist": [-3, 3, 10]}
    whole = brownian_set(options, 200).merged()
    split = brownian_set(options, 200, split=100).merged()
    for name in whole:
        for key, value in whole[name].state().items():
            np.testing.assert_array_equal(split[name].state()[key], value, err_msg=f"{name}/{key}")


def test_rerun_spacing_gives_the_true_time():
    """Evaluations 200 steps apart (a rerun of a sparse dump) give Λ_EH at lags of
    200 steps x dt: the same numbers as evaluating those frames every N = 10 ..."""
    sparse = brownian_set({"eh": [10, 5, 298.0]}, 400, stride=20)
    assert sparse.timeline.interval_ps == pytest.approx(20 * 10 * 0.002)
    summary = sparse.summary(sparse.merged(), "d")["einstein_helfand"]
    assert summary["tau_ps"][0] == pytest.approx(0.4)
    # ... and the collective sum at lag 1 is the brute-force one over those frames
    n = 12
    species = np.arange(n) % 2
    q = np.where(species == 0, 1.0, -1.0)
    x = np.random.default_rng(3).normal(size=(401, n, 3)).cumsum(axis=0)[::20]
    m = (q[None, :, None] * x).sum(axis=1)
    dm = m[1:] - m[:-1]
    total = sparse.reducers["eh_collective"].sums.sum(axis=0)
    assert total[0, 1] / total[0, 0] == pytest.approx((dm**2).sum(axis=1).mean(), rel=1e-12)


def test_changed_ion_count_is_named():
    red = brownian_set({"tcorr": 5}, 3)
    with pytest.raises(ValueError, match=r"number of ions in the group changed at step 40 \(per species A 6, B 6 -> A 5, B 6\)"):
        red.observe(Evaluation(40, 0.002, 10, "run"), np.zeros(11), (np.arange(1, 12)) % 2,
                    np.arange(2, 13), np.ones(11), np.zeros((11, 3)))


def test_atoms_moved_between_runs_start_a_new_history():
    """The same step evaluated again with moved atoms (displace_atoms between runs)
    must not pair with the history's last configuration."""
    red = brownian_set({"eh": [5, 5, 298.0]}, 3)
    n = 12
    species = np.arange(n) % 2
    q = np.where(species == 0, 1.0, -1.0)
    notes = red.observe(Evaluation(30, 0.002, 10, "setup"), np.zeros(n), species, np.arange(1, n + 1), q,
                        np.full((n, 3), 1000.0))
    assert notes and "moved" in notes[0]


def test_reducer_options_are_validated():
    with pytest.raises(ValueError, match="unknown reducer option"):
        ReducerOptions.from_dict({"histogram": [0, 1, 2]})
    with pytest.raises(ValueError, match="eh needs positive NLAGS and BLOCK, got -2 10"):
        ReducerOptions.from_dict({"eh": [-2, 10, 298]})
    assert ReducerOptions.from_dict({"tcorr": 3.0, "corr": [6, 4]}).to_dict() == {"tcorr": 3, "corr": [6.0, 4]}
