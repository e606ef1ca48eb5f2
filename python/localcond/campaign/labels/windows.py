"""The diffusive window [τ1, τ2] of the slope-form Einstein–Helfand Λ, chosen
from the trajectory's own data, and its τ-systematic error.

Why not the first lag where ⟨|ΔM|²⟩ grows linearly: a bounded motion that
relaxes slowly (a bound pair rattling, a cage) also grows linearly in τ until
it saturates, so a log-slope of 1 at short lags can carry the wrong
conductivity. The quantity that must stop changing is Λ itself.

Candidate windows (half-octave steps, all in whole frames):

    W_k = [t_k, 2 t_k],   t_k = round(t_min · 2^(k/2)),   t_min = 2 frames
    Λ_k = P · [⟨|ΔM|²⟩(2 t_k) − ⟨|ΔM|²⟩(t_k)] / t_k        (slope form)

with P the molar-conductivity prefactor (S cm² mol⁻¹ per e² Å² ps⁻¹). A window
is *supported* when 2 t_k ≤ the longest lag the run supports: a quarter of
one block of time origins (or the caller's shorter limit). Block errors need
blocks several times longer than the lag: with 500 ps blocks, pure Brownian
trajectories gave |z| of 2–8 between windows up to 360 ps that are equal by
construction, because neighbouring blocks then share most of their motion.

Rule: the chosen window is the shortest supported W_k that has at least one
longer supported window and differs from none of them:
|Λ_k − Λ_j| ≤ z_c σ(Λ_k − Λ_j) for every supported j > k, with σ(Λ_k − Λ_j)
the block standard error of the difference (computed block by block, so the
correlation of overlapping windows is accounted for) and z_c the Student-t
quantile with B − 1 degrees of freedom (B blocks) at the one-sided level of
Z = 1 normal standard deviation (84 %): 1.14 for 5 blocks, 1.00 for many. When no
window passes, the longest window with a longer neighbour is reported and
the result is marked as failing the check.

Z = 1 rather than 2 (in the t-quantile above): a residual trend is hard to see against the noise of
longer windows, and a window chosen too short is biased, while one chosen
too long is only noisier. On synthetic free ions plus slowly rattling bound
pairs (relaxation 30 ps; 10 trajectories of 40 ns each, two pair amplitudes),
Z = 1 left 10 % of the estimates more than two total errors from the truth
with a mean bias of +4–5 %, Z = 2 20–30 % with +6–7 %, at a smaller total
error for Z = 1 (longer windows carry a smaller systematic). The total error
still understates the scatter there (rms z 1.4–1.9): the τ-systematic, measured
against one noisy longer window, is a floor, not a bound. A run's planned
window is later *checked* at the usual significance: it fails when any
longer window differs by more than the t-quantile at Z_CHECK = 2 (97.7 %).

τ-systematic: the change Λ_k − Λ_next with W_next = [2 t_k, 4 t_k], the
adjacent disjoint window (or the longest supported one when that is not
supported), less its own noise: √max(0, change² − σ²(change)) (see
:func:`systematic`). The measured change and its σ are reported beside it;
the systematic is folded into the total error as √(σ_stat² + systematic²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

Z_TREND = 1.0
Z_CHECK = 2.0
BLOCKS_PER_LAG = 4.0  # a block of origins must be at least this many times the longest lag
RULE = ("shortest half-octave window [t, 2t] whose slope-form Lambda differs from that of every "
        f"longer supported window by at most t_(B-1)(Phi({Z_TREND:g})) block standard errors of the "
        "difference (B blocks; lags up to a quarter block); "
        "tau-systematic = |Lambda(window) - Lambda([2t, 4t])| less its noise in quadrature, folded in "
        "quadrature into the total error")


def candidate_starts(frame_ps: float, longest_ps: float, t_min_frames: int = 2) -> list[int]:
    """t_k in frames for the candidate windows [t_k, 2 t_k], listed while 2 t_k
    stays within the longest supported lag (accumulate :func:`window_lags`)."""
    longest = int(np.floor(longest_ps / frame_ps + 1e-9))
    starts: list[int] = []
    k = 0
    while True:
        t = int(round(t_min_frames * 2 ** (k / 2)))
        if 2 * t > longest:
            break
        if not starts or t > starts[-1]:
            starts.append(t)
        k += 1
    return starts


def window_lags(frame_ps: float, longest_ps: float) -> tuple[int, ...]:
    """Every lag (frames) the window analysis reads: t_k and 2 t_k of each candidate."""
    starts = candidate_starts(frame_ps, longest_ps)
    return tuple(sorted({t for t in starts} | {2 * t for t in starts}))


def frames_to_ps(frames: tuple[int, ...], frame_ps: float) -> list[float]:
    """Lags in ps, rounded to 1e-9 ps so that equal windows compare equal."""
    return [round(f * frame_ps, 9) for f in frames]


def critical_z(z_normal: float, n_blocks: int) -> float:
    """The Student-t quantile (n_blocks − 1 degrees of freedom) at the one-sided level
    Φ(z_normal): the threshold on a difference over its block standard error."""
    if n_blocks < 2:
        return float("inf")
    return float(stats.t.ppf(stats.norm.cdf(z_normal), n_blocks - 1))


@dataclass
class WindowChoice:
    window_frames: tuple[int, int]
    passed: bool
    critical_z: float
    table: list[dict]  # one row per candidate window
    systematic: "Systematic | None"


def choose_window(lags: np.ndarray, frame_ps: float, pooled_m2: np.ndarray, block_m2: np.ndarray,
                  prefactor: float, longest_ps: float, z_trend: float = Z_TREND) -> WindowChoice | None:
    """Apply the rule to ⟨|ΔM|²⟩ at ``lags`` (frames): ``pooled_m2`` [L] over all origins,
    ``block_m2`` [B, L] per block of origins. None when fewer than two windows are supported."""
    index = {int(lag): j for j, lag in enumerate(lags)}
    starts = [t for t in candidate_starts(frame_ps, longest_ps) if t in index and 2 * t in index]
    if len(starts) < 2:
        return None

    def value(m2: np.ndarray, t: int) -> np.ndarray:
        return prefactor * (m2[..., index[2 * t]] - m2[..., index[t]]) / (t * frame_ps)

    pooled = [float(value(pooled_m2, t)) for t in starts]
    blocks = [value(block_m2, t) for t in starts]

    def diff_error(a: int, b: int) -> float:
        d = blocks[a] - blocks[b]
        d = d[np.isfinite(d)]
        return float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")

    n_blocks = int(np.isfinite(block_m2[:, index[2 * starts[-1]]]).sum())
    threshold = critical_z(z_trend, n_blocks)
    table = []
    chosen = None
    for a, t in enumerate(starts):
        b = blocks[a][np.isfinite(blocks[a])]
        stderr = float(b.std(ddof=1) / np.sqrt(b.size)) if b.size > 1 else float("nan")
        worst = 0.0
        for c in range(a + 1, len(starts)):
            err = diff_error(a, c)
            gap = abs(pooled[a] - pooled[c])
            if err > 0:
                z = gap / err
            else:  # identical in every block: no trend unless the pooled values differ
                z = 0.0 if gap <= 1e-12 * max(abs(pooled[a]), abs(pooled[c])) else float("inf")
            worst = max(worst, z)
        longer = a + 1 < len(starts)
        passes = longer and worst <= threshold
        table.append({"tau_window_ps": frames_to_ps((t, 2 * t), frame_ps), "value": pooled[a],
                      "stderr": stderr, "largest_z_to_longer": worst if longer else None,
                      "passes": bool(passes)})
        if passes and chosen is None:
            chosen = a
    passed = chosen is not None
    if chosen is None:
        chosen = len(starts) - 2
    t = starts[chosen]
    return WindowChoice((t, 2 * t), passed, threshold, table,
                        systematic(lags, frame_ps, pooled_m2, block_m2, prefactor, (t, 2 * t), longest_ps))


@dataclass
class Systematic:
    """The change of Λ from a window to the next longer disjoint one (S cm² mol⁻¹)."""

    change: float  # |Λ(window) − Λ(next)|, as measured
    change_stderr: float  # block standard error of that difference
    value: float  # √max(0, change² − stderr²): the change less its expected noise
    next_window_frames: tuple[int, int]


def systematic(lags: np.ndarray, frame_ps: float, pooled_m2: np.ndarray, block_m2: np.ndarray,
               prefactor: float, window_frames: tuple[int, int], longest_ps: float) -> Systematic | None:
    """τ-systematic of the slope form over ``window_frames`` [f1, f2]: against the first
    candidate window [s, 2s] with s ≥ f2 (within the 2 % rounding of the candidate starts;
    for [t, 2t] that is [2t, 4t]), or, when none is supported, the longest supported window
    starting after f1. A measured change contains the noise of both windows,
    ≈ σ of the difference even without any trend; ``value`` removes that part in
    quadrature, so the systematic does not double-count the statistical error."""
    index = {int(lag): j for j, lag in enumerate(lags)}
    f1, f2 = window_frames
    starts = [t for t in candidate_starts(frame_ps, longest_ps) if t in index and 2 * t in index]
    # the next disjoint window starts at f2; candidate starts are rounded, so allow 2 %
    following = [t for t in starts if t >= 0.98 * f2]
    beyond = [t for t in starts if t > f1]
    if f1 not in index or f2 not in index or not (following or beyond):
        return None
    s = following[0] if following else beyond[-1]

    def value(m2: np.ndarray, a: int, b: int) -> np.ndarray:
        return prefactor * (m2[..., index[b]] - m2[..., index[a]]) / ((b - a) * frame_ps)

    change = abs(float(value(pooled_m2, f1, f2) - value(pooled_m2, s, 2 * s)))
    d = value(block_m2, f1, f2) - value(block_m2, s, 2 * s)
    d = d[np.isfinite(d)]
    err = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    debiased = float(np.sqrt(max(0.0, change**2 - err**2))) if np.isfinite(err) else change
    return Systematic(change, err, debiased, (s, 2 * s))
