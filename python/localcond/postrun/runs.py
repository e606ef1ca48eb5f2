"""Post-run reduction: the reducer files of many runs (LAMMPS ``fix localcond …
file PREFIX``, the ASE observer) read, grouped by system, combined and summarised.

Files of one system — the same model (metadata fingerprint), species and
charges, group, reducer options, ions per species and lag unit — are
replicas and combine exactly: every sum adds, the mean series pool as
independent series (blocks never straddle two files), and time correlations
keep the pairs each file counted (two halves of one run lose the pairs that
span the cut, nothing else). Files of different systems stay apart.

Units: λ and Λ in S cm² mol⁻¹, distances in Å, times in ps (lags in
evaluations where a run had no clock).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localcond.errors import LocalcondError
from localcond.engine.options import ReducerOptions
from localcond.engine.reducers.eh_live import CollectiveDisplacement, merged_blocks
from localcond.engine.reducers.reducer_set import Reducers, ReducerSet, merge_into
from localcond.engine.reducers.store import load
from localcond.engine.reducers.summary import finite
from localcond.engine.reducers.timeline import Evaluation, Timeline

REQUIRED = ("species", "charges", "options", "timeline", "ions_per_species", "evaluations")
DEFINITION = ("mean over evaluations (pooled over the files) of the group mean of lambda; error by "
              "blocking of those series, pooled over files")


@dataclass
class RunFile:
    path: Path
    reducers: Reducers
    metadata: dict[str, Any]

    @property
    def key(self) -> str:
        """What makes two files replicas of one system (JSON)."""
        m = self.metadata
        return json.dumps({"model": m.get("model_id") or m.get("model"), "species": m["species"],
                           "charges": m["charges"], "group": m.get("group"), "options": m["options"],
                           "ions_per_species": m["ions_per_species"],
                           "interval_ps": m["timeline"].get("interval_ps")}, sort_keys=True)


def read_run(path: str | Path) -> RunFile:
    """One reducer file, checked: a clear error naming the file when it is not one."""
    path = Path(path)
    reducers, metadata = load(path)
    missing = [k for k in REQUIRED if k not in metadata]
    if missing:
        raise LocalcondError(f"'{path}' was not written by a localcond reducer set (its metadata lacks "
                             f"{', '.join(missing)}); rewrite it with this version")
    try:
        typed = Reducers.from_mapping(reducers)
    except ValueError as exc:
        raise LocalcondError(f"'{path}': {exc}") from None
    return RunFile(path, typed, metadata)


@dataclass
class System:
    """The files of one system, combined."""

    key: str
    files: list[Path] = field(default_factory=list)
    reducers: ReducerSet | None = None
    sources: set[str] = field(default_factory=set)
    traces: list[dict[str, Any]] = field(default_factory=list)  # per file: convergence with run length
    spatial: list[dict[str, np.ndarray]] = field(default_factory=list)  # per file: like/unlike covariance

    @property
    def name(self) -> str:
        meta = json.loads(self.key)
        ions = "+".join(f"{int(n)}{s}" for s, n in zip(meta["species"], meta["ions_per_species"] or []))
        return f"{ions or 'system'}-{hashlib.sha256(self.key.encode()).hexdigest()[:8]}"

    def add(self, run: RunFile) -> None:
        """Combine one more file of this system."""
        reducers = run.reducers.map(lambda _, reducer: reducer.copy())
        for history in (reducers.time_correlation, reducers.eh_collective, reducers.eh_self):
            if history is not None:
                history.restart()  # ion histories are not carried across files
        if self.reducers is None:
            m = run.metadata
            self.reducers = ReducerSet(ReducerOptions.from_dict(m["options"]), m["species"], m["charges"],
                                       None, "replicas", share_validated=bool(m.get("species_share_validated")))
            self.reducers.timeline = Timeline.from_state(m["timeline"])
            self.reducers.ions_per_species = m["ions_per_species"]
            self.reducers.reducers = reducers
        else:
            merge_into(self.reducers.reducers, reducers)
        self.reducers.evaluations += int(run.metadata["evaluations"])
        self.files.append(run.path)
        self.sources.add(str(run.metadata.get("source", "unknown")))
        if reducers.pair_correlation is not None:  # each file's own curves, for the scatter between files
            self.spatial.append(reducers.pair_correlation.by_charge_class(
                reducers.moments.mean, np.asarray(run.metadata["charges"])))
        self.traces.append(_trace(run))

    def absorb(self, other: "System") -> None:
        """Combine another partial combination of this system (e.g. from another MPI rank)."""
        assert self.reducers is not None and other.reducers is not None and other.key == self.key
        merge_into(self.reducers.reducers, other.reducers.reducers)
        self.reducers.evaluations += other.reducers.evaluations
        self.files += other.files
        self.sources |= other.sources
        self.traces += other.traces
        self.spatial += other.spatial


TRACE_COLUMNS = ("evaluations", "step", "lambda_pred", "lambda_pred_stderr", "lambda_eh", "lambda_eh_stderr",
                 "lambda_eh_tau_ps")


def _trace(run: RunFile) -> dict[str, Any]:
    """One file's convergence with run length (ReducerSet.trace), by column name. Files
    written before the errors were traced hold [evaluations, step, Λ_pred, Λ_EH at the
    ladder's last lag]: their Λ_EH (often from one origin) is left out."""
    rows = run.metadata.get("trace") or []
    out: dict[str, Any] = {"file": str(run.path)}
    if rows and len(rows[0]) == 4:
        rows = [[e, step, pred, None, None, None, None] for e, step, pred, _ in rows]
    for k, name in enumerate(TRACE_COLUMNS):
        if name != "step":
            out[name] = [row[k] for row in rows]
    return out


def is_reducer_file(path: str | Path) -> bool:
    """Reducer files are NPZ (zip) archives; anything else is read as a LAMMPS dump."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def group_runs(paths: list[str | Path], progress: bool = False,
               dump_settings: dict[str, Any] | None = None) -> list[System]:
    """Read and combine files, one System per distinct key, in order of first appearance.
    LAMMPS dumps with per-atom λ are read with ``dump_settings`` (:func:`run_from_dump`)."""
    from tqdm import tqdm

    systems: dict[str, System] = {}
    seen: dict[Path, str] = {}
    for path in paths:  # the same file twice would count as two replicas: an error bar from nothing
        resolved = Path(path).resolve()
        if resolved in seen:
            raise LocalcondError(f"'{path}' is given twice (also as '{seen[resolved]}'): each file is one "
                                 "replica; give each once")
        seen[resolved] = str(path)
    for path in tqdm(paths, desc="files", unit="file", disable=not progress):
        if Path(path).is_dir():
            raise LocalcondError(f"'{path}' is a directory; give the reducer files in it "
                                 f"(e.g. '{Path(path) / '*.reduce.npz'}')")
        if not Path(path).exists():
            raise LocalcondError(f"'{path}' does not exist")
        if not Path(path).is_file():
            raise LocalcondError(f"'{path}' is not a regular file")
        if is_reducer_file(path):
            run = read_run(path)
        elif dump_settings is None:
            raise LocalcondError(f"'{path}' is not a reducer file; to reduce a LAMMPS dump with per-atom "
                                 "lambda give --types and --timestep-fs")
        else:
            run = run_from_dump(path, **dump_settings)
        try:
            systems.setdefault(run.key, System(run.key)).add(run)
        except ValueError as exc:  # same system by its metadata, yet reducers that do not combine
            raise LocalcondError(f"'{path}' cannot be combined with the other files of its system: {exc}") from None
    return list(systems.values())


def run_from_dump(path: str | Path, types: list[str | None], timestep_fs: float, options: dict[str, Any],
                  column: str | None = None) -> RunFile:
    """The statistics of a LAMMPS text dump with per-atom λ (``dump custom … id type q
    f_ID``, and ``xu yu zu`` for ``eh``) as if a reducer set had watched the run:
    one evaluation per frame, lags in the dump's own spacing. ``types``: one species
    name (or None) per atom type; charges per species from the dump's ``q``."""
    from localcond.io.lammps_dump import read_dump

    path = Path(path)
    if "corr" in options:
        raise LocalcondError("the spatial correlation needs the reducer files of the run (fix localcond "
                             "... file PREFIX corr RMAX NBINS); dumps give hist, tcorr and eh")
    names = sorted({t for t in types if t is not None}, key=[t for t in types if t is not None].index)
    index_of_type = np.array([-1] + [names.index(t) if t is not None else -1 for t in types])
    reducers: ReducerSet | None = None
    previous: int | None = None
    nevery = 0
    for frame in read_dump(path):
        lam_column = column or next((c for c in frame.columns if c.startswith(("f_", "c_", "v_"))), None)
        if lam_column is None:
            raise LocalcondError(f"'{path}' has no per-atom λ column (f_ID, c_ID or v_NAME); give --column")
        ftypes = frame.types
        if ftypes.max() >= index_of_type.size:
            raise LocalcondError(f"'{path}' has atom type {ftypes.max()} but --types names {len(types)}")
        species = index_of_type[ftypes]
        ions = species >= 0
        if reducers is None:
            q = frame.column("q")
            charges = [float(q[ions & (species == k)].mean()) if np.any(species == k) else 0.0
                       for k in range(len(names))]
            reducers = ReducerSet(ReducerOptions.from_dict(options), names, charges, None, "replicas")
        if previous is not None and nevery == 0:
            nevery = frame.timestep - previous
        previous = frame.timestep
        positions = None
        if "eh" in options:
            positions = np.stack([frame.column(c) for c in ("xu", "yu", "zu")], axis=1)[ions]
        reducers.observe(Evaluation(frame.timestep, timestep_fs / 1000.0, max(nevery, 1), "run"),
                         frame.column(lam_column)[ions], species[ions], frame.ids[ions],
                         frame.column("q")[ions], positions)
    if reducers is None:
        raise LocalcondError(f"'{path}' holds no frames")
    metadata = {"source": f"dump ({path.name})", "model": None, **reducers.metadata()}
    return RunFile(path, reducers.reducers, metadata)


def summarize(system: System) -> dict[str, Any]:
    """Numbers and the curves the figures draw, for one system."""
    assert system.reducers is not None
    red = system.reducers
    merged = red.reducers
    out = red.summary(merged, DEFINITION)
    moments = merged.moments
    species = red.species
    out.update(system=system.name, files=[str(p) for p in system.files], replicas=len(system.files),
               sources=sorted(system.sources), lag_unit_ps=red.timeline.interval_ps)
    weights = moments.count * moments.mean
    transference: dict[str, Any] = {"from_lambda_pred": finite(red.prediction_share(weights))}
    if not red.share_validated:
        transference["from_lambda_pred_note"] = (
            "not reported: the model's split of lambda between species was not validated against measured "
            "shares of Lambda_EH on held-out systems (model metadata 'validation')")
    curves: dict[str, Any] = {}
    hist = merged.histogram
    if hist is not None:
        edges, density = hist.edges, hist.density()
        curves["lambda_distribution"] = {"edges": edges.tolist(), "density": {
            name: [finite(v) for v in density[k]] for k, name in enumerate(species)}}
        out["lambda_tails"] = {name: _tails(hist.counts[k], edges) for k, name in enumerate(species)}
    pc = merged.pair_correlation
    if pc is not None:
        classes = pc.by_charge_class(moments.mean, np.asarray(red.charges))
        r = pc.r_centers
        curves["spatial_correlation"] = {"r_A": r.tolist(), **{k: [finite(v) for v in c] for k, c in classes.items()}}
        for name in classes:  # standard error from the scatter between files (replicas), when there are several
            per_file = np.array([c[name] for c in system.spatial])
            err = per_file.std(axis=0, ddof=1) / np.sqrt(len(per_file)) if len(per_file) > 1 else None
            curves["spatial_correlation"][f"{name}_stderr"] = None if err is None else [finite(v) for v in err]
        out["correlation_length_A"] = {k: _decay_point(r, np.abs(c)) for k, c in classes.items()}
    if "time_correlation" in out:
        tc = out["time_correlation"]
        x = np.asarray(tc["tau_ps"] if tc["tau_ps"] is not None else tc["lags"], dtype=float)
        out["decay_time"] = {"unit": "ps" if tc["tau_ps"] is not None else "evaluations",
                             **{name: _decay_point(x, np.array([np.nan if v is None else v for v in c]))
                                for name, c in tc["normalized"].items()}}
    if "einstein_helfand" in out and merged.eh_collective is not None:
        eh = out["einstein_helfand"]
        lam = np.array([np.nan if v is None else v for v in eh["molar_conductivity"]])
        tau = np.array([np.nan if v is None else v for v in eh["tau_ps"]])
        with np.errstate(invalid="ignore", divide="ignore"):
            m2 = np.log(lam * tau)  # ⟨|ΔM|²⟩ up to a constant
            slope = np.diff(m2) / np.diff(np.log(tau))
        eh["log_slope"] = {"tau_ps": [finite(v) for v in np.sqrt(tau[1:] * tau[:-1])],
                           "value": [finite(v) for v in slope]}
        window = eh["diffusive_window"] = _diffusive_window(merged.eh_collective, red)
        out["lambda_eh"] = _lambda_eh(eh, window)
        share_at = out["lambda_eh"].get("share_tau_ps")
        transference["from_einstein_helfand"] = (eh["species_share"][species[0]][eh["tau_ps"].index(share_at)]
                                                 if share_at is not None else None)
    out["transference_first_species"] = {"species": species[0], **transference}
    curves["convergence"] = sorted(system.traces, key=lambda t: t["file"])
    out["curves"] = curves
    return out


def _lambda_eh(eh: dict[str, Any], window: dict[str, Any] | None) -> dict[str, Any]:
    """The run's Λ_EH as the summary reports it: the diffusive window's value (the rule of
    ``localcond conductivity``) when one passed its check, or none with the reason. Never the ladder's longest lag,
    whose value comes from a few origins, at the end from one. ``share_tau_ps``: the lag at
    which the species share is read, the window's upper end."""
    if window is None:
        return {"value": None, "stderr": None, "tau_window_ps": None, "share_tau_ps": None,
                "note": "no diffusive window yet: the run holds too few blocks of origins for two "
                        "windows with errors (run longer, or use a shorter BLOCK in eh)"}
    lo, hi = window["tau_window_ps"]
    if not window["passed"]:
        return {"value": None, "stderr": None, "tau_window_ps": None, "share_tau_ps": None,
                "note": f"no diffusive window yet: no window up to {hi:g} ps passed the diffusive check "
                        "(einstein_helfand.diffusive_window has the candidates; run longer)"}
    at = min(eh["tau_ps"], key=lambda t: abs(t - hi) if t is not None else math.inf)
    return {"value": window["value"], "stderr": window["stderr"], "tau_window_ps": [lo, hi], "share_tau_ps": at}


def _diffusive_window(collective: CollectiveDisplacement, red: ReducerSet) -> dict[str, Any] | None:
    """The window rule of ``localcond conductivity`` (:mod:`localcond.campaign.labels.windows`) on the
    live collective displacements: slope-form windows [t, 2t] whose ends are both lags of
    the ladder, on the recorded blocks merged to at least BLOCKS_PER_LAG × the longest lag
    tested (:func:`window_blocks`). None without a lag unit or two windows."""
    from localcond.campaign.labels.windows import RULE, choose_window, frames_to_ps
    from localcond.units import molar_conductivity_prefactor

    interval = red.timeline.interval_ps
    if interval is None or red.options.eh is None or not red.ions_per_species:
        return None
    n_salt = sum(c for c, q in zip(red.ions_per_species, red.charges) if q > 0)
    lags = collective.ladder.lags
    merged = window_blocks(collective.sums, collective.block, lags)
    if merged is None:
        return None
    sums, longest = merged
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = collective.sums[..., 1].sum(axis=0) / collective.sums[..., 0].sum(axis=0)
        blocks = np.where(sums[..., 0] > 0, sums[..., 1] / sums[..., 0], np.nan)
    choice = choose_window(lags, interval, pooled, blocks, molar_conductivity_prefactor(red.options.eh.temperature_k, n_salt),
                           float(longest) * interval)
    if choice is None:
        return None
    window = frames_to_ps(choice.window_frames, interval)
    row = next(r for r in choice.table if r["tau_window_ps"] == window)
    return {"tau_window_ps": window, "value": finite(row["value"]), "stderr": finite(row["stderr"]),
            "passed": choice.passed, "critical_z": choice.critical_z,
            "tau_systematic": finite(choice.systematic.value) if choice.systematic else None,
            "rule": RULE + " (on the ladder's lags: windows whose ends are both lags)",
            "windows": [{k: (finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in choice.table]}


def window_blocks(sums: np.ndarray, block: int, lags: np.ndarray,
                  min_blocks: int = 4) -> tuple[np.ndarray, int] | None:
    """The live blocks of origins ``sums`` [B, L, ≥2] (n, Σ|ΔM|², …) merged into blocks
    at least BLOCKS_PER_LAG times the longest lag tested, the offline rule of
    :mod:`localcond.campaign.labels.windows`, so that block errors are not understated by
    blocks shorter than their lags. The longest lag is the largest lag of the ladder
    that leaves ``min_blocks`` merged blocks with data. Returns (merged sums, that lag in
    evaluations), or None when not even the shortest lag leaves that many."""
    from localcond.campaign.labels.windows import BLOCKS_PER_LAG

    have = np.flatnonzero(sums[:, 0, 0] > 0)  # the shortest lag has origins in the most blocks
    for lag in sorted((int(v) for v in lags), reverse=True):
        groups = merged_blocks(have, BLOCKS_PER_LAG * lag, block)
        if groups.shape[0] >= min_blocks:
            return sums[groups].sum(axis=1), lag
    return None


def _tails(counts: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Quantiles of λ from a histogram (linear inside a bin) and the share outside its range."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total == 0:
        return {"count": 0}
    inside = counts[1:-1]
    cdf = np.concatenate([[counts[0]], counts[0] + np.cumsum(inside)]) / total
    out: dict[str, Any] = {"count": total, "below_range": counts[0] / total, "above_range": counts[-1] / total}
    for q in (0.01, 0.05, 0.5, 0.95, 0.99):
        out[f"q{round(q * 100):02d}"] = finite(float(np.interp(q, cdf, edges))) \
            if cdf[0] <= q <= cdf[-1] else None
    return out


def _decay_point(x: np.ndarray, y: np.ndarray) -> float | None:
    """Where |y| last falls below e⁻¹ of its largest value (linear between points);
    None when it never does inside the range."""
    y = np.abs(np.asarray(y, dtype=float))
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    x, y = np.asarray(x, dtype=float)[ok], y[ok]
    threshold = y.max() / math.e
    above = np.flatnonzero(y >= threshold)
    k = int(above[-1])
    if k == len(y) - 1:
        return None
    return finite(float(x[k] + (threshold - y[k]) * (x[k + 1] - x[k]) / (y[k + 1] - y[k])))
