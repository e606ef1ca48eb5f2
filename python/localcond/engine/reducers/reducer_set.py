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

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from localcond.engine.options import EinsteinHelfandOptions, ReducerOptions
from localcond.io.files import write_json
from localcond.engine.reducers.agree import agreed
from localcond.engine.reducers.base import Reducer, allreduce
from localcond.engine.reducers.blocking import BlockingError
from localcond.engine.reducers.eh_live import CollectiveDisplacement, SelfDisplacement, eh_curves
from localcond.engine.reducers.histogram import Histogram
from localcond.engine.reducers.members import MemberMeans
from localcond.engine.reducers.moments import RunningMoments
from localcond.engine.reducers.spatial import PairCorrelation
from localcond.engine.reducers.store import from_bytes, save, to_bytes
from localcond.engine.reducers.summary import finite, lambda_summary
from localcond.engine.reducers.timecorr import TimeCorrelation
from localcond.engine.reducers.timeline import Decision, Evaluation, Timeline

REPLICATED = ("moments", "mean_series", "eh_collective", "member_means")  # identical on every rank of one system
TIME_CORRELATED = ("time_correlation", "eh_collective", "eh_self")
POSITION_TOLERANCE = 1e-9  # relative (to max(1 Å, |x|)): the same configuration evaluated again
LAMBDA_TOLERANCE = 1e-9
TRACE_EVERY = 50


@dataclass
class Reducers:
    """The reducers of one set, by kind: the moments and the blocking error of the mean
    always, the others when their option is on."""

    moments: RunningMoments
    mean_series: BlockingError
    histogram: Histogram | None = None
    time_correlation: TimeCorrelation | None = None
    pair_correlation: PairCorrelation | None = None
    eh_collective: CollectiveDisplacement | None = None
    eh_self: SelfDisplacement | None = None
    member_means: MemberMeans | None = None

    def items(self) -> list[tuple[str, Reducer]]:
        """(name, reducer) of those present, in a fixed order (the names files store)."""
        return [(f.name, value) for f in fields(self) if (value := getattr(self, f.name)) is not None]

    def names(self) -> list[str]:
        return [name for name, _ in self.items()]

    # read like a mapping of the reducers present (files and tests address them by name)
    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __getitem__(self, name: str) -> Reducer:
        reducer = getattr(self, name, None) if name in _KINDS else None
        if reducer is None:
            raise KeyError(name)
        return reducer

    def as_dict(self) -> dict[str, Reducer]:
        return dict(self.items())

    @classmethod
    def from_mapping(cls, reducers: Mapping[str, Reducer]) -> "Reducers":
        """From name -> reducer (a file's or a restart's), each checked against its kind."""
        kinds = {f.name: _KINDS[f.name] for f in fields(cls)}
        unknown = sorted(set(reducers) - set(kinds))
        if unknown:
            raise ValueError(f"unknown reducer(s) {', '.join(unknown)}")
        for name, reducer in reducers.items():
            if not isinstance(reducer, kinds[name]):
                raise ValueError(f"reducer {name!r} is a {type(reducer).__name__}, not a {kinds[name].__name__}")
        moments, series = reducers.get("moments"), reducers.get("mean_series")
        if not isinstance(moments, RunningMoments) or not isinstance(series, BlockingError):
            raise ValueError("a reducer set needs its moments and mean series")
        return cls(moments, series, _of(reducers, "histogram", Histogram),
                   _of(reducers, "time_correlation", TimeCorrelation),
                   _of(reducers, "pair_correlation", PairCorrelation),
                   _of(reducers, "eh_collective", CollectiveDisplacement),
                   _of(reducers, "eh_self", SelfDisplacement), _of(reducers, "member_means", MemberMeans))

    def map(self, change: Callable[[str, Reducer], Reducer]) -> "Reducers":
        """A new set with ``change(name, reducer)`` for every reducer present."""
        return Reducers.from_mapping({name: change(name, reducer) for name, reducer in self.items()})


def merge_into(into: Reducers, other: Reducers) -> None:
    """Merge ``other`` into ``into`` (the same kinds present in both)."""
    if into.names() != other.names():
        raise ValueError(f"reducers {other.names()} cannot be merged into {into.names()}")
    for (_, mine), (_, theirs) in zip(into.items(), other.items()):
        mine.merge(theirs)


K = TypeVar("K", bound=Reducer)


def _of(reducers: Mapping[str, Reducer], name: str, kind: type[K]) -> K | None:
    reducer = reducers.get(name)
    return reducer if isinstance(reducer, kind) else None


_KINDS: dict[str, type] = {
    "moments": RunningMoments, "mean_series": BlockingError, "histogram": Histogram,
    "time_correlation": TimeCorrelation, "pair_correlation": PairCorrelation,
    "eh_collective": CollectiveDisplacement, "eh_self": SelfDisplacement, "member_means": MemberMeans,
}


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
    model_uncertainty: float = float("nan")
    eh_tau_ps: float = field(default=float("nan"), metadata={"in_vector": False})  # the lag of Λ_EH, ps

    def as_dict(self) -> dict[str, float]:
        """By name, in the order of the fix's global vector f_ID[1..10] (doc/fix_localcond.rst)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if f.metadata.get("in_vector", True)}


class ReducerSet:
    def __init__(self, options: ReducerOptions, species: Sequence[str], charges: Sequence[float],
                 comm: Any = None, role: str = "domains", share_validated: bool = False,
                 n_members: int = 0) -> None:
        if role not in ("domains", "replicas"):
            raise ValueError(f"role must be 'domains' or 'replicas', got {role!r}")
        self.options, self.species, self.charges = options, list(species), np.asarray(charges, dtype=float)
        self.comm, self.role = comm, role
        # the split of Λ_pred between species is reported only for a model whose split was
        # checked against measured shares (ModelMetadata.species_share_validated); else NaN
        self.share_validated = bool(share_validated)
        s = len(self.species)
        hist, tcorr, corr, eh = options.hist, options.tcorr, options.corr, options.eh
        self.reducers = Reducers(
            RunningMoments(s), BlockingError(),
            histogram=Histogram(hist.lo, hist.hi, hist.bins, s) if hist else None,
            time_correlation=TimeCorrelation(tcorr.nlags, s) if tcorr else None,
            pair_correlation=PairCorrelation(corr.rmax, corr.bins, s) if corr else None,
            eh_collective=CollectiveDisplacement(eh.nlags, s, eh.block) if eh else None,
            eh_self=SelfDisplacement(eh.nlags, s) if eh else None,
            # an ensemble model: each member's Λ_pred, whence the model uncertainty (reducers/members.py)
            member_means=MemberMeans(n_members) if n_members > 1 else None)
        self.timeline = Timeline()
        self._last = (float("nan"), 0.0)  # the last evaluation's group mean of λ and ions
        self._last_members = np.zeros(0)  # the last evaluation's group mean of each member's λ
        self.ions_per_species: list[float] | None = None
        self.evaluations = 0  # evaluations counted in the instantaneous statistics
        # convergence with run length, at 1, 2, 4, … and every TRACE_EVERY counted evaluations:
        # [evaluations, step, running Λ_pred, its error, Λ_EH, its error, its lag τ (ps)] with Λ_EH
        # at the longest lag whose error is determined (:meth:`_eh_determined`; None until one is)
        self.trace: list[list[float | None]] = []

    # -- MPI helpers -------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self.comm.rank if self.comm is not None else 0

    @property
    def size(self) -> int:
        return self.comm.size if self.comm is not None else 1

    def global_sum(self, values: np.ndarray) -> np.ndarray:
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
                pair_sums: np.ndarray | None = None, jump_limit: float = math.inf,
                member_sums: np.ndarray | None = None) -> list[str]:
        """Feed one evaluation (collective over ranks): this rank's evaluated ions with
        their λ, species index and atom ID, and for ``eh`` their charges and unwrapped
        positions [n, 3] with the longest step (Å) an ion may take between evaluations
        (:meth:`SelfDisplacement.check_step`); for ``corr`` this rank's pair sums [4, S, S, bins]
        (:meth:`PairCorrelation.add`); for an ensemble model (``n_members``) each member's
        sum of λ over this rank's evaluated ions [k]. Returns the notes to log (why a history
        restarted); :meth:`observed` gives the statistics."""
        lam = np.asarray(lam, dtype=float)
        species = np.asarray(species, dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        agreed(self.comm, lambda: self._check_inputs(lam, species, ids, charges, positions, pair_sums,
                                                     member_sums))
        totals = self._count_ions(ev, lam, species, member_sums)
        decision = self.timeline.decide(ev)
        if decision.count:
            self._add_instantaneous(totals, lam, species, pair_sums)
        notes = []
        if self._time_correlated() and (decision.correlate or decision.duplicate):
            notes = self._add_histories(ev, decision, lam, species, ids, charges, positions, jump_limit)
        k = self.evaluations
        if decision.count and (k & (k - 1) == 0 or k % TRACE_EVERY == 0):
            out = self.observed()
            self.trace.append([k, ev.step, finite(out.lambda_pred), finite(out.lambda_pred_stderr),
                               finite(out.lambda_eh), finite(out.lambda_eh_stderr), finite(out.eh_tau_ps)])
        return notes

    def _time_correlated(self) -> list[str]:
        return [n for n in TIME_CORRELATED if getattr(self.reducers, n) is not None]

    def _check_inputs(self, lam: np.ndarray, species: np.ndarray, ids: np.ndarray, charges: np.ndarray | None,
                      positions: np.ndarray | None, pair_sums: np.ndarray | None,
                      member_sums: np.ndarray | None) -> None:
        if not (lam.shape == species.shape == ids.shape) or lam.ndim != 1:
            raise ValueError(f"lambda, species and IDs must be equal 1-d arrays, got shapes "
                             f"{lam.shape}, {species.shape}, {ids.shape}")
        if species.size and (species.min() < 0 or species.max() >= len(self.species)):
            raise ValueError("a species index is outside the model's species")
        if self.reducers.eh_self is not None and (charges is None or positions is None):
            raise ValueError("eh needs the ions' charges and unwrapped positions")
        if self.reducers.pair_correlation is not None and pair_sums is None:
            raise ValueError("corr needs the pairs' sums")
        members = self.reducers.member_means
        if members is not None and (member_sums is None or np.shape(member_sums) != members.sums.shape):
            raise ValueError(f"an ensemble of {members.sums.size} members needs each member's sum of lambda, got "
                             f"{None if member_sums is None else np.shape(member_sums)}")

    def _count_ions(self, ev: Evaluation, lam: np.ndarray, species: np.ndarray,
                    member_sums: np.ndarray | None) -> np.ndarray:
        """The group's sums over all ranks (ions, Σλ, Σλ² per species, and each ensemble
        member's Σλ: one all-reduce); refuses a change of the ion count while time
        correlations follow ions."""
        s = len(self.species)
        extra = np.asarray(member_sums, dtype=float) if self.reducers.member_means is not None else np.zeros(0)
        totals = self.global_sum(np.concatenate([*self.reducers.moments.batch_sums(lam, species), extra]))
        ions, n = totals[:s], float(totals[:s].sum())
        self._last = (float(totals[s:2 * s].sum() / n) if n else float("nan"), n)
        self._last_members = totals[3 * s:] / n if n else np.full(extra.shape, np.nan)
        totals = totals[:3 * s]
        if self._time_correlated() and self.ions_per_species is not None and list(ions) != self.ions_per_species:
            raise ValueError(
                f"the number of ions in the group changed at step {ev.step} (per species "
                f"{self._per_species(self.ions_per_species)} -> {self._per_species(ions)}): atoms were "
                "created, deleted, or changed type or group; the time correlations follow a fixed set "
                "of ions, so define the fix anew after such a change")
        self.ions_per_species = [float(v) for v in ions]
        return totals

    def _add_instantaneous(self, totals: np.ndarray, lam: np.ndarray, species: np.ndarray,
                           pair_sums: np.ndarray | None) -> None:
        """The statistics of this evaluation alone: moments, mean series, histogram, pairs."""
        s = len(self.species)
        r = self.reducers
        self.evaluations += 1
        r.moments.add_sums(totals[:s], totals[s:2 * s], totals[2 * s:])
        r.mean_series.update(self._last[0])
        if r.member_means is not None:
            r.member_means.update(self._last_members)
        if r.histogram is not None:
            r.histogram.update(lam, species)
        if r.pair_correlation is not None and pair_sums is not None:
            r.pair_correlation.add(pair_sums)

    def _add_histories(self, ev: Evaluation, decision: Decision, lam: np.ndarray, species: np.ndarray,
                       ids: np.ndarray, charges: np.ndarray | None, positions: np.ndarray | None,
                       jump_limit: float) -> list[str]:
        """The time-correlated statistics (λ autocorrelation, live Einstein–Helfand), which
        follow each ion on the rank that owns its ID. Collective steps first, then the
        per-rank work inside agreed(): a rank that fails there (an ion's species changed)
        must not leave the others waiting in a collective."""
        r = self.reducers
        x = np.asarray(positions, dtype=float).reshape(-1, 3) if positions is not None else np.zeros((ids.size, 3))
        q = np.asarray(charges, dtype=float) if charges is not None else np.zeros(ids.size)
        own_ids, own_species, own_lam, own_q, own_x = self._to_owners(ids, species, lam, q, x)
        m_global = None
        if r.eh_collective is not None:
            charge_rows = np.zeros((len(self.species), ids.size))  # [S, n]: q_i in its species' row
            charge_rows[species, np.arange(ids.size)] = q
            m_global = self.global_sum(charge_rows @ x)  # M_s = Σ_{i∈s} q_i r_i [S, 3]
        if decision.duplicate:
            def moved_here() -> float:
                moved = 0.0
                if r.time_correlation is not None:
                    moved += r.time_correlation.ions.moved(own_ids, own_lam, LAMBDA_TOLERANCE)
                if r.eh_self is not None:
                    moved += r.eh_self.ions.moved(own_ids, own_x, POSITION_TOLERANCE)
                return moved

            if self.global_sum(np.array([agreed(self.comm, moved_here)]))[0] > 0:
                decision = self.timeline.restart_here(
                    ev, decision.count, "the atoms moved since the last evaluation of this step, "
                    "without dynamics (a command between runs such as displace_atoms)")
        notes = []
        if decision.correlate:
            if decision.restart:
                for reducer in (r.time_correlation, r.eh_collective, r.eh_self):
                    if reducer is not None:
                        reducer.restart()
                if decision.note:
                    notes.append(decision.note)

            def update_here() -> None:
                if r.time_correlation is not None:
                    r.time_correlation.update(own_ids, own_species, own_lam)
                if r.eh_collective is not None and r.eh_self is not None:
                    r.eh_self.check_step(own_ids, own_x, jump_limit, ev.step)
                    r.eh_collective.update(m_global)
                    r.eh_self.update(own_ids, own_species, own_q, own_x)

            agreed(self.comm, update_here)
        return notes

    def _per_species(self, counts: Sequence[float]) -> str:
        return ", ".join(f"{name} {int(c)}" for name, c in zip(self.species, counts))

    def observed(self) -> Observed:
        """The statistics after the last evaluation, in the fix's global vector's order.
        Role ``domains``: from replicated values, no communication (the fix asks for it
        only when LAMMPS reads the vector, on any subset of ranks); ``replicas`` with a
        communicator: collective (pools the replicas)."""
        series, moments, members = self.reducers.mean_series, self.reducers.moments, self.reducers.member_means
        if self.role == "replicas" and self.comm is not None:
            series, moments = allreduce(series, self.comm), allreduce(moments, self.comm)
            members = allreduce(members, self.comm) if members is not None else None
        _, _, variance = moments.total()
        weights = moments.count * moments.mean
        group_mean, n = self._last
        out = Observed(group_mean, n, series.mean(), series.stderr(), float(np.sqrt(variance)),
                       pred_share_first=self.prediction_share(weights),
                       model_uncertainty=members.uncertainty() if members is not None else float("nan"))
        if self.reducers.eh_collective is not None and self.timeline.interval_ps is not None:
            out.lambda_eh, out.lambda_eh_stderr, out.eh_share_first, out.eh_tau_ps = \
                self._eh_determined(self.reducers.eh_collective)
        return out

    def prediction_share(self, weights: np.ndarray) -> float:
        """The first species' share of Λ_pred from its per-species sums of λ (``weights``:
        count × mean per species); NaN unless the model's split was validated."""
        if not self.share_validated or weights.sum() == 0:
            return float("nan")
        return float(weights[0] / weights.sum())

    def _eh_determined(self, collective: CollectiveDisplacement) -> tuple[float, float, float, float]:
        """Λ_EH, its error, the first species' share and the lag τ (ps) at the longest lag
        whose error is determined (at least MIN_CHUNKS chunks of origins: :func:`eh_curves`);
        all NaN until one is. A longer lag has fewer origins, down to a single one at the
        ladder's end: its value is too noisy to report without an error."""
        curves = self._eh_curves(collective, None)
        ok = np.flatnonzero(np.isfinite(curves["stderr"]))
        if not ok.size:
            return (float("nan"),) * 4
        j = int(ok[-1])
        return (float(curves["lambda_eh"][j]), float(curves["stderr"][j]), float(curves["share"][j, 0]),
                float(curves["tau_ps"][j]))

    def _eh_options(self) -> EinsteinHelfandOptions:
        if self.options.eh is None:
            raise ValueError("this reducer set has no live Einstein-Helfand statistics (option eh)")
        return self.options.eh

    def _eh_curves(self, collective: CollectiveDisplacement, self_part: SelfDisplacement | None) -> dict:
        n_salt = sum(c for c, q in zip(self.ions_per_species or [], self.charges) if q > 0) or float("nan")
        return eh_curves(collective, self_part, self.timeline.interval_ps or float("nan"),
                         self._eh_options().temperature_k, n_salt,
                         np.asarray(self.ions_per_species or [np.nan] * len(self.species)))

    # -- merged state, files, restarts ---------------------------------------------------------

    def merged(self) -> Reducers:
        """All reducers merged over ranks (collective; the same on every rank)."""
        def merge(name: str, reducer: Reducer) -> Reducer:
            if self.comm is None or (self.role == "domains" and name in REPLICATED):
                return reducer.copy()
            return allreduce(reducer, self.comm)

        return self.reducers.map(merge)

    def metadata(self) -> dict[str, Any]:
        return {"species": self.species, "charges": self.charges.tolist(), "options": self.options.to_dict(),
                "role": self.role, "ranks": self.size, "timeline": self.timeline.state(),
                "ions_per_species": self.ions_per_species, "evaluations": self.evaluations,
                "trace": self.trace, "species_share_validated": self.share_validated}

    def summary(self, merged: Reducers, definition: str) -> dict[str, Any]:
        moments = merged.moments
        out = {**lambda_summary(moments, merged.mean_series, self.species, definition),
               "evaluations": self.evaluations}
        members = merged.member_means
        out["lambda_pred"]["model_uncertainty"] = finite(members.uncertainty()) if members is not None else None
        out["lambda_pred"]["model_uncertainty_definition"] = (
            f"standard deviation (ddof 1) of the {members.sums.size} ensemble members' Lambda_pred; for a "
            "jackknife ensemble (ridge and field solvers) the jackknife standard error from the finite set of "
            "training systems. Not a statistical error of this run; says nothing outside the training domain"
            if members is not None else "a single model: no ensemble, no model uncertainty")
        if members is not None:
            out["lambda_pred"]["member_lambda_pred"] = [finite(v) for v in members.member_lambda()]
        interval = self.timeline.interval_ps
        tc = merged.time_correlation
        if tc is not None:
            c = tc.correlation(moments.mean)
            out["time_correlation"] = {
                "lags": tc.lags.tolist(), "tau_ps": None if interval is None else (tc.lags * interval).tolist(),
                "normalized": {name: [finite(v) for v in c[k]] for k, name in enumerate(self.species)}}
        if merged.eh_collective is not None and merged.eh_self is not None:
            out["einstein_helfand"] = self._eh_summary(merged.eh_collective, merged.eh_self)
        return out

    def _eh_summary(self, collective: CollectiveDisplacement, self_part: SelfDisplacement) -> dict[str, Any]:
        c = self._eh_curves(collective, self_part)
        n_salt = sum(v for v, q in zip(self.ions_per_species or [], self.charges) if q > 0)
        return {
            "temperature_k": self._eh_options().temperature_k, "n_salt": n_salt, "unit": "S cm^2 mol^-1",
            "lags": collective.ladder.lags.tolist(), "tau_ps": [finite(v) for v in c["tau_ps"]],
            "molar_conductivity": [finite(v) for v in c["lambda_eh"]],
            "stderr": [finite(v) for v in c["stderr"]], "nernst_einstein": [finite(v) for v in c["lambda_ne"]],
            "species_share": {name: [finite(v) for v in c["share"][:, k]] for k, name in enumerate(self.species)},
            "origins": c["origins"].tolist(),
            # the lag of f_ID[6]: the longest with an error (_eh_determined)
            "vector_tau_ps": finite(c["tau_ps"][np.isfinite(c["stderr"])][-1]) if np.isfinite(c["stderr"]).any() else None,
            "definition": "Lambda = N_A e^2 <|dM|^2> / (6 kB T tau n_salt) with origins at every evaluation; "
                          "errors from chunks of consecutive blocks of origins, each spanning at least 2 lags; Nernst-Einstein from the ions' own displacements "
                          "(origins every 2^level evaluations at the ladder's level); share_s = <dM_s . dM> / <|dM|^2>",
        }

    def write(self, prefix: str, metadata: dict[str, Any], summary_extra: dict[str, Any], definition: str) -> None:
        """Write PREFIX.reduce.npz and PREFIX.summary.json (collective; rank 0 writes)."""
        merged = self.merged()
        if self.rank != 0:
            return
        save(Path(prefix + ".reduce.npz"), merged.as_dict(), {**metadata, **self.metadata()})
        write_json(prefix + ".summary.json", {**self.summary(merged, definition), **summary_extra})

    def state_bytes(self, identity: dict[str, Any]) -> bytes:
        """The merged state as bytes for a restart file (collective)."""
        return to_bytes(self.merged().as_dict(), {"identity": identity, **self.metadata()})

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

        def share(name: str, reducer: Reducer) -> Reducer:
            replicated = self.role == "domains" and name in REPLICATED
            return reducer.copy() if replicated else reducer.for_rank(self.rank, self.size)

        self.reducers = Reducers.from_mapping(reducers).map(share)
