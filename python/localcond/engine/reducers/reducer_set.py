"""The statistics of one ``fix localcond`` or one ASE observer, as one object.

A :class:`ReducerSet` builds its reducers from validated options, feeds them
each evaluation under the rules of :mod:`localcond.engine.reducers.timeline`, merges
them over MPI ranks, gives each rank its share when a run continues from a
restart, and writes the reducer file and its summary. The LAMMPS fix's Python
side and the ASE observer are thin users of it.

MPI roles: ``"domains"`` — one system whose ions are spread over the ranks
(LAMMPS): the group mean, the per-species moments of λ and M are global (one
all-reduce of sums per evaluation), and what every rank computes alike from
them (the moments, the mean series, the collective Einstein–Helfand sums) is
kept whole on every rank, not added up, so the fix's global vector
(:meth:`ReducerSet.observed`) needs no communication. ``"replicas"`` — one
independent system per rank (the ASE observer): everything is per rank, and
merging pools the replicas.
Units: λ in S cm² mol⁻¹, positions in Å, charges in e, times in ps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localcond.io.files import write_json
from localcond.engine.reducers.agree import agreed
from localcond.engine.reducers.base import Reducer, allreduce
from localcond.engine.reducers.blocking import BlockingError
from localcond.engine.reducers.eh_live import CollectiveDisplacement, SelfDisplacement, eh_curves
from localcond.engine.reducers.histogram import Histogram
from localcond.engine.reducers.moments import RunningMoments
from localcond.engine.reducers.spatial import PairCorrelation
from localcond.engine.reducers.store import from_bytes, save, to_bytes
from localcond.engine.reducers.summary import finite, lambda_summary
from localcond.engine.reducers.timecorr import TimeCorrelation
from localcond.engine.reducers.timeline import Evaluation, Timeline

REPLICATED = ("moments", "mean_series", "eh_collective")  # identical on every rank of one system
TIME_CORRELATED = ("time_correlation", "eh_collective", "eh_self")
POSITION_TOLERANCE = 1e-9  # relative (to max(1 Å, |x|)): the same configuration evaluated again
LAMBDA_TOLERANCE = 1e-9
TRACE_EVERY = 50


@dataclass(frozen=True)
class ReducerOptions:
    """Which reducers to keep: ``hist`` [LO, HI, NBINS] (λ histogram), ``tcorr`` NLAGS
    (λ autocorrelation over lags 0 … NLAGS−1 evaluations), ``corr`` [RMAX, NBINS]
    (spatial correlation of λ, Å), ``eh`` [NLAGS, BLOCK, TEMP] (live Einstein–Helfand
    up to NLAGS evaluations, errors over blocks of BLOCK origins, T in K)."""

    hist: tuple[float, float, int] | None = None
    tcorr: int = 0
    corr: tuple[float, int] | None = None
    eh: tuple[int, int, float] | None = None

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "ReducerOptions":
        unknown = sorted(set(options) - {"hist", "tcorr", "corr", "eh"})
        if unknown:
            raise ValueError(f"unknown reducer option(s) {', '.join(unknown)} (known: hist tcorr corr eh)")
        hist = options.get("hist")
        if hist is not None:
            lo, hi, bins = float(hist[0]), float(hist[1]), int(hist[2])
            if not hi > lo:
                raise ValueError(f"hist needs HI > LO, got {lo:g} {hi:g}")
            if bins < 1:
                raise ValueError(f"hist needs a positive number of bins, got {bins}")
            hist = (lo, hi, bins)
        tcorr = int(options.get("tcorr") or 0)
        if "tcorr" in options and tcorr < 1:
            raise ValueError(f"tcorr needs a positive number of lags, got {tcorr}")
        corr = options.get("corr")
        if corr is not None:
            rmax, nbins = float(corr[0]), int(corr[1])
            if not rmax > 0:
                raise ValueError(f"corr needs RMAX > 0, got {rmax:g}")
            if nbins < 1:
                raise ValueError(f"corr needs a positive number of bins, got {nbins}")
            corr = (rmax, nbins)
        eh = options.get("eh")
        if eh is not None:
            nlags, block, temperature = int(eh[0]), int(eh[1]), float(eh[2])
            if nlags < 1 or block < 1:
                raise ValueError(f"eh needs positive NLAGS and BLOCK, got {nlags} {block}")
            if not temperature > 0:
                raise ValueError(f"eh needs the target temperature in K > 0, got {temperature:g}")
            eh = (nlags, block, temperature)
        return cls(hist, tcorr, corr, eh)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v is not None and v != 0}


@dataclass
class Observed:
    """The statistics after an evaluation (the fix's global vector, in order)."""

    group_mean: float
    count: float
    lambda_pred: float
    lambda_pred_stderr: float
    lambda_std: float
    lambda_eh: float = float("nan")
    lambda_eh_stderr: float = float("nan")
    eh_share_first: float = float("nan")
    pred_share_first: float = float("nan")

    def vector(self) -> tuple[float, ...]:
        return (self.group_mean, self.count, self.lambda_pred, self.lambda_pred_stderr, self.lambda_std,
                self.lambda_eh, self.lambda_eh_stderr, self.eh_share_first, self.pred_share_first)


class ReducerSet:
    def __init__(self, options: ReducerOptions, species: Sequence[str], charges: Sequence[float],
                 comm: Any = None, role: str = "domains") -> None:
        if role not in ("domains", "replicas"):
            raise ValueError(f"role must be 'domains' or 'replicas', got {role!r}")
        self.options, self.species, self.charges = options, list(species), np.asarray(charges, dtype=float)
        self.comm, self.role = comm, role
        s = len(self.species)
        self.reducers: dict[str, Reducer] = {"moments": RunningMoments(s), "mean_series": BlockingError()}
        if options.hist:
            self.reducers["histogram"] = Histogram(*options.hist, s)
        if options.tcorr:
            self.reducers["time_correlation"] = TimeCorrelation(options.tcorr, s)
        if options.corr:
            self.reducers["pair_correlation"] = PairCorrelation(*options.corr, s)
        if options.eh:
            self.reducers["eh_collective"] = CollectiveDisplacement(options.eh[0], s, options.eh[1])
            self.reducers["eh_self"] = SelfDisplacement(options.eh[0], s)
        self.timeline = Timeline()
        self._last = (float("nan"), 0.0)  # the last evaluation's group mean of λ and ions
        self.ions_per_species: list[float] | None = None
        self.evaluations = 0  # evaluations counted in the instantaneous statistics
        # convergence with run length: [evaluations, step, running Λ_pred, Λ_EH at the longest lag]
        # at 1, 2, 4, … and every TRACE_EVERY counted evaluations
        self.trace: list[list[float | None]] = []

    # -- MPI helpers -------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self.comm.rank if self.comm is not None else 0

    @property
    def size(self) -> int:
        return self.comm.size if self.comm is not None else 1

    def _global_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum over the ranks of one system (domains); a replica's own values otherwise."""
        if self.comm is None or self.role == "replicas":
            return values
        from mpi4py import MPI

        return self.comm.allreduce(values, op=MPI.SUM)

    def _to_owners(self, ids: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each ion's ID and rows of ``arrays`` on the rank that follows it (ID mod ranks)."""
        if self.comm is None or self.role == "replicas":
            return (ids, *arrays)
        owner = ids % self.size
        outgoing = [tuple(a[owner == r] for a in (ids, *arrays)) for r in range(self.size)]
        incoming = self.comm.alltoall(outgoing)
        return tuple(np.concatenate([part[k] for part in incoming]) for k in range(1 + len(arrays)))

    # -- one evaluation ----------------------------------------------------------------------

    def observe(self, ev: Evaluation, lam: np.ndarray, species: np.ndarray, ids: np.ndarray,
                charges: np.ndarray | None = None, positions: np.ndarray | None = None,
                pair_sums: np.ndarray | None = None) -> list[str]:
        """Feed one evaluation (collective over ranks): this rank's evaluated ions with
        their λ, species index and atom ID, and for ``eh`` their charges and unwrapped
        positions [n, 3]; for ``corr`` this rank's pair sums [4, S, S, bins]
        (:meth:`PairCorrelation.add`). Returns the notes to log (why a history
        restarted); :meth:`observed` gives the statistics."""
        lam = np.asarray(lam, dtype=float)
        species = np.asarray(species, dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        time_correlated = [n for n in TIME_CORRELATED if n in self.reducers]

        def check() -> np.ndarray:
            if not (lam.shape == species.shape == ids.shape) or lam.ndim != 1:
                raise ValueError(f"lambda, species and IDs must be equal 1-d arrays, got shapes "
                                 f"{lam.shape}, {species.shape}, {ids.shape}")
            if species.size and (species.min() < 0 or species.max() >= len(self.species)):
                raise ValueError("a species index is outside the model's species")
            if "eh_self" in self.reducers and (charges is None or positions is None):
                raise ValueError("eh needs the ions' charges and unwrapped positions")
            if "pair_correlation" in self.reducers and pair_sums is None:
                raise ValueError("corr needs the pairs' sums")

        agreed(self.comm, check)
        s = len(self.species)
        moments: RunningMoments = self.reducers["moments"]  # type: ignore[assignment]
        totals = self._global_sum(np.concatenate(moments.batch_sums(lam, species)))
        ions, n = totals[:s], float(totals[:s].sum())
        group_mean = float(totals[s:2 * s].sum() / n) if n else float("nan")
        self._last = (group_mean, n)
        if time_correlated and self.ions_per_species is not None and list(ions) != self.ions_per_species:
            raise ValueError(
                f"the number of ions in the group changed at step {ev.step} (per species "
                f"{self._per_species(self.ions_per_species)} -> {self._per_species(ions)}): atoms were "
                "created, deleted, or changed type or group; the time correlations follow a fixed set "
                "of ions, so define the fix anew after such a change")
        self.ions_per_species = [float(v) for v in ions]

        decision = self.timeline.decide(ev)
        if decision.count:
            self.evaluations += 1
            moments.add_sums(totals[:s], totals[s:2 * s], totals[2 * s:])
            self.reducers["mean_series"].update(group_mean)  # type: ignore[attr-defined]
            if "histogram" in self.reducers:
                self.reducers["histogram"].update(lam, species)  # type: ignore[attr-defined]
            if "pair_correlation" in self.reducers:
                self.reducers["pair_correlation"].add(pair_sums)  # type: ignore[attr-defined]
        notes = []
        if time_correlated and (decision.correlate or decision.duplicate):
            # collective steps first, then the per-rank work inside agreed(): a rank that fails
            # there (an ion's species changed) must not leave the others waiting in a collective
            x = np.asarray(positions, dtype=float).reshape(-1, 3) if positions is not None else np.zeros((ids.size, 3))
            q = np.asarray(charges, dtype=float) if charges is not None else np.zeros(ids.size)
            own_ids, own_species, own_lam, own_q, own_x = self._to_owners(ids, species, lam, q, x)
            m_global = None
            if "eh_collective" in self.reducers:
                charge_rows = np.zeros((len(self.species), ids.size))  # [S, n]: q_i in its species' row
                charge_rows[species, np.arange(ids.size)] = q
                m_global = self._global_sum(charge_rows @ x)  # M_s = Σ_{i∈s} q_i r_i [S, 3]
            if decision.duplicate:
                def moved_here() -> float:
                    moved = 0.0
                    if "time_correlation" in self.reducers:
                        moved += self.reducers["time_correlation"].ions.moved(  # type: ignore[attr-defined]
                            own_ids, own_lam, LAMBDA_TOLERANCE)
                    if "eh_self" in self.reducers:
                        moved += self.reducers["eh_self"].ions.moved(  # type: ignore[attr-defined]
                            own_ids, own_x, POSITION_TOLERANCE)
                    return moved

                if self._global_sum(np.array([agreed(self.comm, moved_here)]))[0] > 0:
                    decision = self.timeline.restart_here(
                        ev, decision.count, "the atoms moved since the last evaluation of this step, "
                        "without dynamics (a command between runs such as displace_atoms)")
            if decision.correlate:
                if decision.restart:
                    for name in time_correlated:
                        self.reducers[name].restart()  # type: ignore[attr-defined]
                    if decision.note:
                        notes.append(decision.note)

                def update_here() -> None:
                    if "time_correlation" in self.reducers:
                        self.reducers["time_correlation"].update(own_ids, own_species, own_lam)  # type: ignore[attr-defined]
                    if "eh_self" in self.reducers:
                        self.reducers["eh_collective"].update(m_global)  # type: ignore[attr-defined]
                        self.reducers["eh_self"].update(own_ids, own_species, own_q, own_x)  # type: ignore[attr-defined]

                agreed(self.comm, update_here)
        k = self.evaluations
        if decision.count and (k & (k - 1) == 0 or k % TRACE_EVERY == 0):
            out = self.observed()
            self.trace.append([k, ev.step, finite(out.lambda_pred), finite(out.lambda_eh)])
        return notes

    def _per_species(self, counts: Sequence[float]) -> str:
        return ", ".join(f"{name} {int(c)}" for name, c in zip(self.species, counts))

    def observed(self) -> Observed:
        """The statistics after the last evaluation, in the fix's global vector's order.
        Role ``domains``: from replicated values, no communication (the fix asks for it
        only when LAMMPS reads the vector, on any subset of ranks); ``replicas`` with a
        communicator: collective (pools the replicas)."""
        series, moments = self.reducers["mean_series"], self.reducers["moments"]
        if self.role == "replicas" and self.comm is not None:
            series, moments = allreduce(series, self.comm), allreduce(moments, self.comm)
        _, _, variance = moments.total()  # type: ignore[attr-defined]
        weights = moments.count * moments.mean  # type: ignore[attr-defined]
        group_mean, n = self._last
        out = Observed(group_mean, n, series.mean(), series.stderr(), float(np.sqrt(variance)),  # type: ignore[attr-defined]
                       pred_share_first=float(weights[0] / weights.sum()) if weights.sum() != 0 else float("nan"))
        if "eh_collective" in self.reducers and self.timeline.interval_ps is not None:
            out.lambda_eh, out.lambda_eh_stderr, out.eh_share_first = self._eh_longest()
        return out

    def _eh_longest(self) -> tuple[float, float, float]:
        """Λ_EH at the longest lag, its error and the first species' share (no Λ_NE)."""
        curves = self._eh_curves(self.reducers["eh_collective"], None, longest_only=True)  # type: ignore[arg-type]
        return float(curves["lambda_eh"][-1]), float(curves["stderr"][-1]), float(curves["share"][-1, 0])

    def _eh_curves(self, collective: CollectiveDisplacement, self_part: SelfDisplacement | None,
                   longest_only: bool = False) -> dict:
        assert self.options.eh is not None
        n_salt = sum(c for c, q in zip(self.ions_per_species or [], self.charges) if q > 0) or float("nan")
        return eh_curves(collective, self_part, self.timeline.interval_ps or float("nan"), self.options.eh[2],
                         n_salt, np.asarray(self.ions_per_species or [np.nan] * len(self.species)), longest_only)

    # -- merged state, files, restarts ---------------------------------------------------------

    def merged(self) -> dict[str, Reducer]:
        """All reducers merged over ranks (collective; the same on every rank)."""
        out = {}
        for name, reducer in self.reducers.items():
            if self.comm is None or (self.role == "domains" and name in REPLICATED):
                out[name] = reducer.copy()
            else:
                out[name] = allreduce(reducer, self.comm)
        return out

    def metadata(self) -> dict[str, Any]:
        return {"species": self.species, "charges": self.charges.tolist(), "options": self.options.to_dict(),
                "role": self.role, "ranks": self.size, "timeline": self.timeline.state(),
                "ions_per_species": self.ions_per_species, "evaluations": self.evaluations,
                "trace": self.trace}

    def summary(self, merged: dict[str, Reducer], definition: str) -> dict[str, Any]:
        moments: RunningMoments = merged["moments"]  # type: ignore[assignment]
        series: BlockingError = merged["mean_series"]  # type: ignore[assignment]
        out = {**lambda_summary(moments, series, self.species, definition), "evaluations": self.evaluations}
        interval = self.timeline.interval_ps
        if "time_correlation" in merged:
            tc: TimeCorrelation = merged["time_correlation"]  # type: ignore[assignment]
            c = tc.correlation(moments.mean)
            out["time_correlation"] = {
                "lags": tc.lags.tolist(), "tau_ps": None if interval is None else (tc.lags * interval).tolist(),
                "normalized": {name: [finite(v) for v in c[k]] for k, name in enumerate(self.species)}}
        if "eh_collective" in merged:
            out["einstein_helfand"] = self._eh_summary(merged["eh_collective"], merged["eh_self"])  # type: ignore[arg-type]
        return out

    def _eh_summary(self, collective: CollectiveDisplacement, self_part: SelfDisplacement) -> dict[str, Any]:
        assert self.options.eh is not None
        c = self._eh_curves(collective, self_part)
        n_salt = sum(v for v, q in zip(self.ions_per_species or [], self.charges) if q > 0)
        return {
            "temperature_k": self.options.eh[2], "n_salt": n_salt, "unit": "S cm^2 mol^-1",
            "lags": collective.ladder.lags.tolist(), "tau_ps": [finite(v) for v in c["tau_ps"]],
            "molar_conductivity": [finite(v) for v in c["lambda_eh"]],
            "stderr": [finite(v) for v in c["stderr"]], "nernst_einstein": [finite(v) for v in c["lambda_ne"]],
            "species_share": {name: [finite(v) for v in c["share"][:, k]] for k, name in enumerate(self.species)},
            "origins": c["origins"].tolist(),
            "definition": "Lambda = N_A e^2 <|dM|^2> / (6 kB T tau n_salt) with origins at every evaluation; "
                          "errors from chunks of consecutive blocks of origins, each spanning at least 2 lags; Nernst-Einstein from the ions' own displacements "
                          "(origins every 2^level evaluations at the ladder's level); share_s = <dM_s . dM> / <|dM|^2>",
        }

    def write(self, prefix: str, metadata: dict[str, Any], summary_extra: dict[str, Any], definition: str) -> None:
        """Write PREFIX.reduce.npz and PREFIX.summary.json (collective; rank 0 writes)."""
        merged = self.merged()
        if self.rank != 0:
            return
        save(Path(prefix + ".reduce.npz"), merged, {**metadata, **self.metadata()})
        write_json(prefix + ".summary.json", {**self.summary(merged, definition), **summary_extra})

    def state_bytes(self, identity: dict[str, Any]) -> bytes:
        """The merged state as bytes for a restart file (collective)."""
        return to_bytes(self.merged(), {"identity": identity, **self.metadata()})

    def restore(self, data: bytes, identity: dict[str, Any]) -> None:
        """Continue from :meth:`state_bytes` written by a run with the same identity."""
        reducers, metadata = from_bytes(data, "the restart file's fix localcond state")
        stored = metadata["identity"]
        for key, value in identity.items():
            if stored.get(key) != value:
                raise ValueError(f"the restart file's fix localcond had a different {key} ({stored.get(key)!r} "
                                 f"instead of {value!r}); use a new fix ID to start fresh statistics")
        self.timeline = Timeline.from_state(metadata["timeline"])
        self.ions_per_species = metadata["ions_per_species"]
        self.evaluations = int(metadata["evaluations"])
        self.trace = [list(row) for row in metadata.get("trace", [])]
        for name, reducer in reducers.items():
            replicated = self.role == "domains" and name in REPLICATED
            self.reducers[name] = reducer.copy() if replicated else reducer.for_rank(self.rank, self.size)

