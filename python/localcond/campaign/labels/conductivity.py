"""``localcond conductivity``: Einstein–Helfand and Nernst–Einstein molar
conductivities of LAMMPS trajectories, with block or replica errors and a
diffusive-regime check.

By default the slope-form window [τ1, τ2] is chosen from the data by the rule
of :mod:`localcond.campaign.labels.windows` (Λ must stop changing with the window, up to
the longest lag the run supports); the τ-systematic (change to the next longer
window) is reported beside the statistical error and folded into the total.

Conventions (doc/design.md §1): Λ = ⟨|ΔM|²⟩ / (6 V k_B T τ c) with T the
thermostat's target temperature and c the salt concentration, by default
c = N_cations / (N_A V) (``cations``; ``anions`` or an explicit number of
formula units are selectable). The ratio form uses one τ; the slope form uses
[⟨|ΔM|²⟩(τ2) − ⟨|ΔM|²⟩(τ1)] / (τ2 − τ1), which removes the short-time offset.
Λ_NE keeps only the self terms Σ_i q_i² ⟨|Δr_i|²⟩. Several dumps are
independent replicas of one system.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.errors import DumpFormatError, LocalcondError
from localcond.campaign.labels.einstein_helfand import (
    BlockSums,
    DisplacementAccumulator,
    block_estimate,
    log_spaced_lags,
)
from localcond.campaign.labels.trajectory import IonSet, count_frames, ion_frames
from localcond.campaign.labels.windows import (
    BLOCKS_PER_LAG,
    RULE,
    WindowChoice,
    choose_window,
    frames_to_ps,
    systematic,
    window_lags,
)
from localcond.io.files import write_json as write_json_file
from localcond.units import (
    concentration_mol_per_l,
    diffusion_cm2_per_s,
    molar_conductivity_prefactor,
)

UNIT = "S cm^2 mol^-1"
DIFFUSIVE_SLOPE_TOLERANCE = 0.15


CURRENTS = {
    "ions": "dM = sum over the ions' nodes of Q dr (solvent and the dipoles of molecular ions left out)",
    "all": "dM = sum over every charged atom of q dr (the solvent's and the molecular ions' polarisation "
           "current included; species shares then leave out the polarisation's share)",
}


@dataclass
class Settings:
    timestep_fs: float
    temperature_k: float
    tau_ps: float | None = None
    tau_window_ps: tuple[float, float] | None = None
    max_lag_ps: float | None = None  # default: the length of one block of origins
    n_blocks: int = 5
    error: str = "blocks"  # or "replicas"
    concentration: str = "cations"  # or "anions"
    n_salt: float | None = None
    ion_types: tuple[int, ...] | None = None  # atom types that are ions (default: charged atoms)
    molecules: bool = False  # each ion-type atom is the centre of a molecular ion (the dump's mol column)
    current: str = "ions"  # or "all": ΔM of every charged atom (solvent and ion polarisation included)


@dataclass
class Accumulated:
    ions: IonSet
    frame_ps: float
    n_frames: list[int]
    lags: np.ndarray
    sums: list[BlockSums] = field(default_factory=list)  # one per replica


def _frames_and_spacing(path: Path, settings: Settings) -> tuple[int, float]:
    """Frame count and frame spacing (ps) from the first two frames."""
    n = count_frames(path)
    if n < 3:
        raise DumpFormatError(f"{path}: {n} frame(s); a conductivity needs a trajectory")
    frames = ion_frames(path, settings.timestep_fs, settings.ion_types, settings.molecules)
    next(frames)
    _, second = next(frames)
    return n, second.time_ps


def accumulate(paths: Sequence[str | Path], settings: Settings, progress: bool = False) -> Accumulated:
    """One streaming pass over each replica."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise LocalcondError("no trajectory given")
    if settings.current not in CURRENTS:
        raise LocalcondError(f"current must be one of {sorted(CURRENTS)}, got {settings.current!r}")
    first_n, frame_ps = _frames_and_spacing(paths[0], settings)
    counts = [first_n] + [_frames_and_spacing(p, settings)[0] for p in paths[1:]]
    shortest = min(counts)
    wanted = [t for t in ((settings.tau_ps,) if settings.tau_ps else ()) + tuple(settings.tau_window_ps or ())]
    for tau in wanted:
        if tau >= (shortest - 1) * frame_ps:
            raise LocalcondError(
                f"tau {tau:g} ps is not shorter than the trajectory ({(shortest - 1) * frame_ps:g} ps, "
                f"{shortest} frames every {frame_ps:g} ps)"
            )
    tau_lags = tuple(int(round(t / frame_ps)) for t in wanted)
    for tau, lag in zip(wanted, tau_lags):
        if lag < 1 or abs(lag * frame_ps - tau) > 1e-6 * max(tau, frame_ps):
            raise LocalcondError(f"tau {tau:g} ps is not a multiple of the frame spacing {frame_ps:g} ps")
    longest = longest_supported_ps(settings, (shortest - 1) * frame_ps)
    max_lag = min(int(longest / frame_ps + 1e-9), (shortest - 1) // 2)
    max_lag = max(max_lag, max(tau_lags, default=1), 1)
    lags = log_spaced_lags(max_lag, extra=tau_lags + window_lags(frame_ps, longest))

    result: Accumulated | None = None
    for path, n_frames in zip(paths, counts):
        accumulator: DisplacementAccumulator | None = None
        for ions, frame in ion_frames(path, settings.timestep_fs, settings.ion_types, settings.molecules,
                                      polarisation=settings.current == "all"):
            if accumulator is None:
                if result is None:
                    result = Accumulated(ions, frame_ps, [], lags)
                else:
                    _check_same_system(result.ions, ions, path)
                accumulator = DisplacementAccumulator(
                    ions.charges, ions.species_index(), lags, n_frames, settings.n_blocks
                )
            if frame.index == 1 and abs(frame.time_ps - frame_ps) > 1e-9 * frame_ps:
                raise DumpFormatError(f"{path}: frame spacing {frame.time_ps:g} ps differs from "
                                      f"{frame_ps:g} ps in {paths[0]}")
            accumulator.add(frame.positions, frame.polarisation)
            if progress and frame.index % 200 == 0:
                print(f"\rlocalcond conductivity: {path.name} frame {frame.index}/{n_frames}", end="",
                      file=sys.stderr, flush=True)
        assert accumulator is not None and result is not None
        if accumulator.seen != n_frames:
            raise DumpFormatError(f"{path}: read {accumulator.seen} frames, counted {n_frames}")
        result.sums.append(accumulator.sums)
        result.n_frames.append(n_frames)
    if progress:
        print(file=sys.stderr)
    assert result is not None
    return result


def longest_supported_ps(settings: Settings, shortest_ps: float) -> float:
    """The longest lag the run supports: a quarter of one block of time origins (the
    shortest trajectory over its blocks; a whole trajectory with replica errors), or
    the user's --max-lag-ps if shorter (see :mod:`localcond.campaign.labels.windows`)."""
    per_block = shortest_ps / (1 if settings.error == "replicas" else max(settings.n_blocks, 1))
    longest = per_block / BLOCKS_PER_LAG
    return min(longest, settings.max_lag_ps) if settings.max_lag_ps else longest


def _check_same_system(a: IonSet, b: IonSet, path: Path) -> None:
    if a.n_ions != b.n_ions or not np.array_equal(np.sort(a.charges), np.sort(b.charges)):
        raise DumpFormatError(f"{path}: a replica must hold the same ions as the first trajectory")
    if abs(a.volume_a3 - b.volume_a3) > 1e-6 * a.volume_a3:
        raise DumpFormatError(f"{path}: a replica must have the same box volume as the first trajectory")


def n_salt_of(ions: IonSet, settings: Settings) -> tuple[float, str]:
    if settings.n_salt:
        return float(settings.n_salt), f"n_salt = {settings.n_salt:g} formula units given by the user"
    if settings.concentration == "cations":
        return float((ions.charges > 0).sum()), "number of cations / (N_A V)"
    if settings.concentration == "anions":
        return float((ions.charges < 0).sum()), "number of anions / (N_A V)"
    raise LocalcondError(f"unknown concentration definition {settings.concentration!r}")


def _log_slopes(lags_ps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """d ln y / d ln τ between consecutive lags (value at the larger lag), NaN at the first."""
    out = np.full(values.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = np.log(values[1:] / values[:-1]) / np.log(lags_ps[1:] / lags_ps[:-1])[
            (...,) + (None,) * (values.ndim - 1)]
    return out


@dataclass
class _Estimator:
    """How one block's sums become a rate (per ps) at the chosen lag or window."""

    per_block: Callable[[np.ndarray], np.ndarray]
    description: dict  # tau_ps or tau_window_ps, form, how it was chosen
    check_lags: list[int]  # lags (indices) whose log-slopes must be ~1
    window: tuple[float, float] | None
    choice: WindowChoice | None
    longest_ps: float


def _error_blocks(acc: Accumulated, settings: Settings) -> tuple[BlockSums, BlockSums, str]:
    """Per-block means (replicas or blocks of origins), the pooled means, and how errors are made."""
    if settings.error == "replicas":
        if len(acc.sums) < 2:
            raise LocalcondError("--error replicas needs at least 2 trajectories")
        blocks = BlockSums.stack([s.total() for s in acc.sums]).means()
        method = f"standard error over {len(acc.sums)} independent replicas"
    else:
        blocks = BlockSums.stack(acc.sums).means()
        method = (f"block averaging: {settings.n_blocks} consecutive blocks of time origins per "
                  f"trajectory, {blocks.count.shape[0]} blocks in all")
    return blocks, BlockSums.stack(acc.sums).total().means(), method


def _estimator(acc: Accumulated, settings: Settings, pooled: BlockSums, blocks: BlockSums, prefactor: float,
               slopes: tuple[np.ndarray, np.ndarray], warnings: list[str]) -> _Estimator:
    """The slope form over a window (given, or chosen by the window rule), else the ratio
    form at one lag (given, or by the diffusive-regime check when no window fits the run)."""
    lags_ps = acc.lags * acc.frame_ps
    choice = None
    window = settings.tau_window_ps
    longest = longest_supported_ps(settings, min(acc.n_frames) * acc.frame_ps - acc.frame_ps)
    if not settings.tau_ps and not window:
        choice = choose_window(acc.lags, acc.frame_ps, pooled.m2[0], blocks.m2, prefactor, longest)
        if choice is not None:
            window = tuple(frames_to_ps(choice.window_frames, acc.frame_ps))
            if not choice.passed:
                warnings.append(
                    "no diffusive window: the slope-form Lambda still changes significantly with "
                    f"the window up to the longest lag the run supports ({longest:g} ps); "
                    f"reporting [{window[0]:g}, {window[1]:g}] ps: run longer")
    if window:
        t1, t2 = window
        j1 = int(np.flatnonzero(acc.lags == round(t1 / acc.frame_ps))[0])
        j2 = int(np.flatnonzero(acc.lags == round(t2 / acc.frame_ps))[0])
        dt = lags_ps[j2] - lags_ps[j1]
        # The slope form removes the short-time offset, so a log-slope of ⟨|ΔM|²⟩ below 1
        # is expected there and says nothing; its window is judged by the window rule.
        return _Estimator(lambda a: (a[:, j2] - a[:, j1]) / dt,
                          {"tau_window_ps": [float(t1), float(t2)], "form": "slope",
                           "tau_chosen": "given" if settings.tau_window_ps else "automatic (window rule)"},
                          [], (float(t1), float(t2)), choice, longest)
    if settings.tau_ps:
        j_tau = int(np.flatnonzero(acc.lags == round(settings.tau_ps / acc.frame_ps))[0])
    else:  # too short a run for two candidate windows
        j_tau = _choose_tau(*slopes, warnings)
    return _Estimator(lambda a: a[:, j_tau] / lags_ps[j_tau],
                      {"tau_ps": float(lags_ps[j_tau]), "form": "ratio",
                       "tau_chosen": "given" if settings.tau_ps else "automatic (diffusive-regime check)"},
                      [j_tau], None, choice, longest)


def _diffusive_warnings(check_lags: list[int], lags_ps: np.ndarray, slopes: tuple[np.ndarray, np.ndarray],
                        species: list[int]) -> list[str]:
    slope_m2, slope_msd = slopes
    warnings = []
    for j in check_lags:
        if j == 0 or not np.isfinite(slope_m2[j]):
            continue
        if abs(slope_m2[j] - 1.0) > DIFFUSIVE_SLOPE_TOLERANCE:
            warnings.append(f"log-slope of <|dM|^2> at {lags_ps[j]:g} ps is {slope_m2[j]:.2f}, not ~1: "
                            "tau may not be in the diffusive regime")
        for s, t in enumerate(species):
            if abs(slope_msd[j, s] - 1.0) > DIFFUSIVE_SLOPE_TOLERANCE:
                warnings.append(f"log-slope of the type-{t} MSD at {lags_ps[j]:g} ps is "
                                f"{slope_msd[j, s]:.2f}, not ~1")
    return warnings


def _entry(pair: tuple[float, float], unit: str | None = None) -> dict:
    out = {"value": pair[0], "stderr": pair[1] if np.isfinite(pair[1]) else None}
    if unit:
        out["unit"] = unit
    return out


def _tau_systematic(acc: Accumulated, est: _Estimator, pooled: BlockSums, blocks: BlockSums, prefactor: float,
                    lam: dict, window_desc: dict) -> None:
    """Add the τ-systematic (change to the next disjoint window) to Λ and the window description."""
    if not est.window:
        return
    frames = (int(round(est.window[0] / acc.frame_ps)), int(round(est.window[1] / acc.frame_ps)))
    sys_ = systematic(acc.lags, acc.frame_ps, pooled.m2[0], blocks.m2, prefactor, frames, est.longest_ps)
    if sys_ is None:
        return
    stat = lam["stderr"] if lam["stderr"] is not None else float("nan")
    lam["tau_systematic"] = sys_.value
    lam["total_error"] = float(np.hypot(stat, sys_.value))
    window_desc["tau_systematic"] = {
        "value": sys_.value, "measured_change": sys_.change, "change_stderr": sys_.change_stderr,
        "next_window_ps": frames_to_ps(sys_.next_window_frames, acc.frame_ps), "unit": UNIT,
        "definition": "sqrt(max(0, change^2 - stderr(change)^2)), change = Lambda(window) - "
                      "Lambda(next disjoint window)"}


def analyse(acc: Accumulated, settings: Settings) -> dict:
    """The summary dictionary written as JSON: Λ (Einstein–Helfand), Λ_NE, their ratio,
    species shares and diffusion coefficients with block (or replica) errors, the window
    or lag they were measured at and why, and the curves behind them."""
    ions = acc.ions
    n_salt, c_definition = n_salt_of(ions, settings)
    prefactor = molar_conductivity_prefactor(settings.temperature_k, n_salt)
    lags_ps = acc.lags * acc.frame_ps
    species = [int(t) for t in ions.species]
    counts = np.array([(ions.types == t).sum() for t in species])
    blocks, pooled, error_method = _error_blocks(acc, settings)
    m2 = pooled.m2[0]
    msd = pooled.self_sq[0] / counts[None, :]
    slopes = (_log_slopes(lags_ps, m2), _log_slopes(lags_ps, msd))
    warnings: list[str] = []
    est = _estimator(acc, settings, pooled, blocks, prefactor, slopes, warnings)
    warnings += _diffusive_warnings(est.check_lags, lags_ps, slopes, species)
    per_block = est.per_block

    def estimate(quantity) -> tuple[float, float]:
        """Value from all origins pooled; standard error from the blocks."""
        value = float(quantity(pooled)[0])
        return value, block_estimate(quantity(blocks))[1]

    def eh_of(b: BlockSums) -> np.ndarray:
        return prefactor * per_block(b.m2)

    def ne_of(b: BlockSums) -> np.ndarray:
        return prefactor * per_block(b.self_q2.sum(axis=2))

    eh, ne = estimate(eh_of), estimate(ne_of)
    ratio = estimate(lambda b: eh_of(b) / ne_of(b))
    share = {str(t): estimate(lambda b, s=s: per_block(b.cross[..., s]) / per_block(b.m2))
             for s, t in enumerate(species)}
    d_unit = diffusion_cm2_per_s(1.0, 1.0)
    diffusion = {str(t): estimate(lambda b, s=s: d_unit * per_block(b.self_sq[..., s]) / counts[s])
                 for s, t in enumerate(species)}

    lam = _entry(eh, UNIT) | {"method": "Einstein-Helfand"}
    window_desc: dict = {"window_rule": None}
    if est.choice is not None:
        window_desc = {"window_rule": RULE, "window_check_passed": est.choice.passed,
                       "critical_z": est.choice.critical_z, "windows": est.choice.table}
    _tau_systematic(acc, est, pooled, blocks, prefactor, lam, window_desc)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_curve = prefactor * blocks.m2 / lags_ps[None, :]
        ratio_value = prefactor * pooled.m2[0] / lags_ps
    ratio_err = np.array([block_estimate(ratio_curve[:, j])[1] for j in range(len(lags_ps))])
    return {
        "molar_conductivity": lam,
        "nernst_einstein": _entry(ne, UNIT),
        "ratio": _entry(ratio),
        **est.description,
        "error_method": error_method,
        "n_frames": sum(acc.n_frames),
        "n_replicas": len(acc.sums),
        "frame_spacing_ps": acc.frame_ps,
        "trajectory_ps": [(n - 1) * acc.frame_ps for n in acc.n_frames],
        "n_ions": ions.n_ions,
        "ions_per_type": {str(t): int(c) for t, c in zip(species, counts)},
        "charges_per_type": {str(t): float(ions.charges[ions.types == t][0]) for t in species},
        "n_salt": n_salt,
        "concentration_mol_per_l": concentration_mol_per_l(n_salt, ions.volume_a3),
        "concentration_definition": c_definition,
        "volume_A3": ions.volume_a3,
        "temperature_k": settings.temperature_k,
        "current": CURRENTS[settings.current],
        "diffusion_coefficients": {t: _entry(v, "cm^2 s^-1") for t, v in diffusion.items()},
        "species_share_of_conductivity": {
            t: _entry(v) | {"definition": "<dM_s . dM> / <|dM|^2> (t+ for the cation)"}
            for t, v in share.items()
        },
        "diffusive_check": {
            "lags_ps": lags_ps.tolist(),
            "logslope_dM2": [None if not np.isfinite(v) else float(v) for v in slopes[0]],
            "logslope_msd": {str(t): [None if not np.isfinite(v) else float(v) for v in slopes[1][:, s]]
                             for s, t in enumerate(species)},
            "warnings": warnings,
        },
        **window_desc,
        "curves": {
            "lags_ps": lags_ps.tolist(),
            "lambda_ratio_form": [float(v) for v in ratio_value],
            "lambda_ratio_form_stderr": [None if not np.isfinite(v) else float(v) for v in ratio_err],
            "unit": UNIT,
        },
        "localcond_version": __version__,
    }


def _choose_tau(slope_m2: np.ndarray, slope_msd: np.ndarray, warnings: list[str]) -> int:
    """The shortest lag where the ion MSDs and <|dM|^2> all grow linearly
    (log-slopes within the tolerance of 1); the longest lag if none does."""
    tol = DIFFUSIVE_SLOPE_TOLERANCE
    for j in range(1, len(slope_m2)):
        if (np.all(np.abs(slope_msd[j] - 1.0) <= tol) and np.isfinite(slope_m2[j])
                and abs(slope_m2[j] - 1.0) <= tol):
            return j
    warnings.append("no lag passed the diffusive-regime check; using the longest lag")
    return len(slope_m2) - 1


def write_json(summary: dict, path: str | Path, inputs: Sequence[str | Path]) -> Path:
    path = Path(path)
    summary = dict(summary, inputs=[str(Path(p).resolve()) for p in inputs])
    return write_json_file(path, summary)
