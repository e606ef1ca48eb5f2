"""The Python side of ``fix localcond`` (plugin/fix_localcond.cpp).

The C++ fix calls :func:`open_session` once per fix (on every MPI rank) and
``FixSession.evaluate`` every N steps with memoryviews over its own buffers
(no copies). Exceptions propagate to C++, which turns their message into a
LAMMPS error.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from localcond import __version__
from localcond.errors import ModelOutputError
from localcond.io.files import check_writable_prefix
from localcond.model import reference
from localcond.reduce.blocking import BlockingError
from localcond.reduce.eh_live import LiveEinsteinHelfand
from localcond.reduce.histogram import Histogram
from localcond.reduce.spatial import PairCorrelation
from localcond.reduce.moments import RunningMoments
from localcond.reduce.store import Reducer, allreduce, save
from localcond.reduce.summary import finite, lambda_summary
from localcond.reduce.timecorr import TimeCorrelation
from localcond.runtime import LoadedModel, evaluate, load_model
from localcond.species import map_types


def describe(model: LoadedModel, indices: list[int]) -> str:
    md = model.metadata
    lines = [f"  model {model.path}: {md.kind}"]
    if md.kind == reference.KIND:
        lines.append("  NOTE: reference model, an analytic test function, not a trained conductivity model")
    elif not md.trained:
        lines.append("  WARNING: untrained model (random weights): its values mean nothing")
    lines.append(
        f"  cutoff {md.cutoff:g} A, {md.n_layers} layer(s), receptive field {md.receptive_field:g} A, "
        f"{md.dtype}, contract v{md.contract_version}; output lambda in {md.units['output']}"
    )
    lines.append(f"  torch threads per rank: {torch.get_num_threads()} (OMP_NUM_THREADS sets it; default 1)")
    lines.append("  type  species  charge(e)")
    for t, index in enumerate(indices, start=1):
        if index < 0:
            lines.append(f"  {t:4d}  NULL     (excluded)")
        else:
            lines.append(f"  {t:4d}  {md.species[index]:<8s} {md.charges[index]:+g}")
    return "\n".join(lines)


class FixSession:
    """One ``fix localcond`` instance's model, type map and reducers."""

    def __init__(self, model: LoadedModel, type_species: Sequence[str | None], comm: Any = None,
                 prefix: str | None = None, histogram: tuple[float, float, int] | None = None,
                 nlags: int = 0, correlation: tuple[float, int] | None = None,
                 group: str = "all", eh: tuple[int, int, float] | None = None) -> None:
        self.model = model
        self.comm = comm
        self.prefix = prefix
        if prefix is not None:
            check_writable_prefix(prefix)
        n_species = len(model.metadata.species)
        self.reducers: dict[str, Reducer] = {
            "moments": RunningMoments(n_species),  # per species, local ions
            "mean_series": BlockingError(),  # the group mean per evaluation (global)
        }
        if histogram is not None:
            self.reducers["histogram"] = Histogram(*histogram, n_species)
        if nlags > 0:  # each rank keeps the ions whose ID mod nprocs is its rank
            self.reducers["time_correlation"] = TimeCorrelation(nlags, n_species)
        if correlation is not None:
            self.reducers["pair_correlation"] = PairCorrelation(*correlation, n_species)
        self.eh_temperature = eh[2] if eh else None
        self.interval_ps: float | None = None
        self.n_salt: float | None = None
        if eh is not None:
            self.reducers["einstein_helfand"] = LiveEinsteinHelfand(eh[0], n_species, eh[1])
        md = model.metadata
        self.identity = {"model": json.loads(md.to_json()), "group": group,
                         "types": [s or "NULL" for s in type_species],
                         "histogram": list(histogram) if histogram else None, "nlags": nlags,
                         "correlation": list(correlation) if correlation else None,
                         "eh": list(eh) if eh else None}
        self.last_step: int | None = None  # the last step each accumulator has counted
        self.eh_last_step: int | None = None
        self.pairs_last_step: int | None = None
        self.type_species_index = map_types(md, type_species)
        self.type_charge = [md.charges[i] if i >= 0 else math.nan for i in self.type_species_index]
        self.cutoff = float(md.cutoff)
        self.receptive_field = float(md.receptive_field)
        self.n_layers = int(md.n_layers)
        self.summary = describe(model, self.type_species_index)

    def pairs(self, step: int, lam_i: memoryview, lam_j: memoryview, species_i: memoryview,
              species_j: memoryview, r: memoryview) -> None:
        """Ordered pairs (i owned by this rank) for the spatial correlation of λ
        (called before :meth:`reduce` of the same step)."""
        if step == self.pairs_last_step:
            return
        self.pairs_last_step = step
        self.reducers["pair_correlation"].update(
            np.frombuffer(lam_i, dtype=np.float64), np.frombuffer(lam_j, dtype=np.float64),
            np.frombuffer(species_i, dtype=np.int64), np.frombuffer(species_j, dtype=np.int64),
            np.frombuffer(r, dtype=np.float64))

    def displacements(self, step: int, interval_ps: float, ids: memoryview, species: memoryview,
                      charges: memoryview, positions: memoryview) -> tuple:
        """Feed the live Einstein–Helfand reducer with this evaluation's unwrapped
        positions (collective); return (Λ_EH at the longest lag, its error, the first
        species' share of Λ_EH, its share of Λ_pred)."""
        if step == self.eh_last_step:
            return self._eh_values()
        self.eh_last_step = step
        ids_a = np.frombuffer(ids, dtype=np.int64)
        species_a = np.frombuffer(species, dtype=np.int64)
        q = np.frombuffer(charges, dtype=np.float64)
        x = np.frombuffer(positions, dtype=np.float64).reshape(-1, 3)
        n_species = len(self.model.metadata.species)
        m_local = np.zeros((n_species, 3))
        np.add.at(m_local, species_a, q[:, None] * x)
        positive = float((q > 0).sum())
        if self.comm is not None:
            from mpi4py import MPI

            m_global = self.comm.allreduce(m_local, op=MPI.SUM)
            positive = self.comm.allreduce(positive, op=MPI.SUM)
        else:
            m_global = m_local
        if self.interval_ps is None:
            self.interval_ps, self.n_salt = interval_ps, positive
        elif abs(interval_ps - self.interval_ps) > 1e-9 * self.interval_ps:
            raise ValueError(f"the time between evaluations changed ({self.interval_ps} -> {interval_ps} ps); "
                             "the live Einstein-Helfand estimate needs a fixed timestep")
        owned = self._to_owners(ids_a, species_a, q, x)
        self.reducers["einstein_helfand"].update(m_global, *owned)
        return self._eh_values()

    def _eh_curves(self, reducer: "LiveEinsteinHelfand") -> dict:
        """Λ_EH, Λ_NE (S cm² mol⁻¹) and species shares per lag; errors over blocks."""
        from localcond.labels.units import molar_conductivity_prefactor

        prefactor = molar_conductivity_prefactor(self.eh_temperature, self.n_salt or 1.0)
        tau = np.arange(1, reducer.nlags + 1) * (self.interval_ps or np.nan)
        pooled, blocks = reducer.pooled(), reducer.block_means()
        lam = prefactor * pooled["m2"] / tau
        ne = prefactor * pooled["self_q2"].sum(axis=1) / tau
        block_lam = prefactor * blocks["m2"] / tau[None, :]
        with np.errstate(invalid="ignore"):
            counts = np.isfinite(block_lam).sum(axis=0)
            err = np.where(counts >= 2, np.nanstd(block_lam, axis=0, ddof=1) / np.sqrt(np.maximum(counts, 1)), np.nan)
            share = pooled["cross"] / pooled["m2"][:, None]
        return {"tau_ps": tau, "lambda_eh": lam, "stderr": err, "lambda_ne": ne, "share": share,
                "complete_blocks": counts}

    def _eh_values(self) -> tuple:
        reducer = self._global(["einstein_helfand"])["einstein_helfand"]
        curves = self._eh_curves(reducer)  # type: ignore[arg-type]
        moments = self._global(["moments"])["moments"]
        weights = moments.count * moments.mean  # type: ignore[attr-defined]
        pred_share = float(weights[0] / weights.sum()) if weights.sum() != 0 else float("nan")
        return (float(curves["lambda_eh"][-1]), float(curves["stderr"][-1]),
                float(curves["share"][-1, 0]), pred_share)

    def evaluate(
        self, step: int, species: memoryview, edge_index: memoryview, edge_vec: memoryview,
        ids: memoryview, n_local: int, out: memoryview,
    ) -> float:
        """Fill ``out`` with λ for the first ``n_local`` nodes; return the model's
        wall time in seconds (for the fix's timing summary)."""
        species_a = np.frombuffer(species, dtype=np.int64)
        edge_index_a = np.frombuffer(edge_index, dtype=np.int64).reshape(2, -1)
        edge_vec_a = np.frombuffer(edge_vec, dtype=np.float64).reshape(-1, 3)
        out_a = np.frombuffer(out, dtype=np.float64)
        start = time.perf_counter()
        try:
            values = evaluate(self.model, species_a, edge_index_a, edge_vec_a, n_local)
        except ModelOutputError as exc:
            if exc.bad_nodes:
                atom_ids = np.sort(np.frombuffer(ids, dtype=np.int64)[exc.bad_nodes])
                shown = ", ".join(str(i) for i in atom_ids[:5])
                more = ", ..." if len(atom_ids) > 5 else ""
                raise ModelOutputError(f"{exc} for atom IDs {shown}{more}") from None
            raise
        elapsed = time.perf_counter() - start
        out_a[:] = values
        return elapsed

    def _global(self, names: Sequence[str] | None = None) -> dict[str, Reducer]:
        """Reducers merged over ranks (the mean series is global already)."""
        out = {}
        for name in names or self.reducers:
            reducer = self.reducers[name]
            if name == "mean_series" or self.comm is None:
                out[name] = reducer.copy()
            else:
                out[name] = allreduce(reducer, self.comm)
        return out

    def _to_owners(self, ids: np.ndarray, *arrays: np.ndarray) -> tuple:
        """Send each ion's ID and rows of ``arrays`` to the rank that owns the ID
        (ID mod nprocs)."""
        if self.comm is None:
            return (ids, *arrays)
        owner = ids % self.comm.size
        outgoing = [tuple(a[owner == r] for a in (ids, *arrays)) for r in range(self.comm.size)]
        incoming = self.comm.alltoall(outgoing)
        return tuple(np.concatenate([part[k] for part in incoming]) for k in range(1 + len(arrays)))

    def reduce(self, step: int, group_mean: float, species: memoryview, ids: memoryview,
               lam: memoryview) -> tuple:
        """Update the reducers with this evaluation (collective over ranks); return
        (running Λ_pred, its standard error, std of λ) for the fix's global vector."""
        if step == self.last_step:
            # the setup of a run (or a restart) re-evaluates the step the previous
            # run ended on: count each step once
            return self._running()
        self.last_step = step
        species_a = np.frombuffer(species, dtype=np.int64)
        lam_a = np.frombuffer(lam, dtype=np.float64)[: species_a.size]
        self.reducers["moments"].update(lam_a, species_a)
        self.reducers["mean_series"].update(group_mean)
        if "histogram" in self.reducers:
            self.reducers["histogram"].update(lam_a, species_a)
        if "time_correlation" in self.reducers:
            owned = self._to_owners(np.frombuffer(ids, dtype=np.int64), species_a, lam_a)
            self.reducers["time_correlation"].update(*owned)
        return self._running()

    def _running(self) -> tuple:
        merged = self._global(["moments", "mean_series"])
        series: BlockingError = merged["mean_series"]  # type: ignore[assignment]
        _, _, variance = merged["moments"].total()  # type: ignore[attr-defined]
        return series.mean(), series.stderr(), float(np.sqrt(variance))

    def _eh_summary(self, reducer: "LiveEinsteinHelfand") -> dict:
        c = self._eh_curves(reducer)
        species = self.model.metadata.species
        return {
            "temperature_k": self.eh_temperature, "n_salt": self.n_salt, "unit": "S cm^2 mol^-1",
            "tau_ps": c["tau_ps"].tolist(), "molar_conductivity": [finite(v) for v in c["lambda_eh"]],
            "stderr": [finite(v) for v in c["stderr"]], "nernst_einstein": [finite(v) for v in c["lambda_ne"]],
            "species_share": {name: [finite(v) for v in c["share"][:, k]] for k, name in enumerate(species)},
            "definition": "Lambda = N_A e^2 <|dM|^2> / (6 kB T tau n_salt), origins at every evaluation; "
                          "errors from blocks of origins; share_s = <dM_s . dM> / <|dM|^2>",
        }

    def state_bytes(self) -> bytes:
        """All reducers merged over ranks, as NPZ bytes (collective) for a restart file."""
        merged = self._global()
        buffer = io.BytesIO()
        arrays = {f"{name}/{key}": np.asarray(v) for name, r in merged.items()
                  for key, v in r.state().items()}
        np.savez(buffer, __identity__=json.dumps(self.identity),
                 __last_steps__=np.array([-1 if v is None else v for v in
                                          (self.last_step, self.eh_last_step, self.pairs_last_step)]),
                 **({"__interval_ps__": np.array(self.interval_ps), "__n_salt__": np.array(self.n_salt)}
                    if self.interval_ps is not None else {}),
                 __kinds__=json.dumps({n: r.kind for n, r in merged.items()}), **arrays)
        return buffer.getvalue()

    def restore(self, data: bytes) -> None:
        """Continue from a restart file's reducers: the global series on every rank,
        additive sums on rank 0 only, ion histories on the ranks that own the IDs."""
        stored = np.load(io.BytesIO(data), allow_pickle=False)
        identity = json.loads(str(stored["__identity__"]))
        for key in ("model", "group", "types", "histogram", "nlags", "correlation", "eh"):
            if identity[key] != self.identity[key]:
                raise ValueError(
                    f"the restart file's fix localcond had a different {key} "
                    f"({identity[key]!r} instead of {self.identity[key]!r}); "
                    "use a new fix ID to start fresh statistics")
        self.interval_ps = float(stored["__interval_ps__"]) if "__interval_ps__" in stored.files else None
        self.n_salt = float(stored["__n_salt__"]) if "__n_salt__" in stored.files else None
        self.last_step, self.eh_last_step, self.pairs_last_step = (
            None if v < 0 else int(v) for v in stored["__last_steps__"])
        rank = self.comm.rank if self.comm is not None else 0
        size = self.comm.size if self.comm is not None else 1
        for name, kind in json.loads(str(stored["__kinds__"])).items():
            state = {k[len(name) + 1:]: stored[k] for k in stored.files if k.startswith(name + "/")}
            reducer = Reducer.registry[kind].from_state(state)
            if name != "mean_series" and rank != 0:
                reducer = _emptied(reducer)
            if isinstance(reducer, LiveEinsteinHelfand):
                full = LiveEinsteinHelfand.from_state(state)
                mine = full.ids % size == rank
                reducer = full
                if rank != 0:
                    reducer.self_sums = np.zeros_like(full.self_sums)
                reducer.ids, reducer.species = full.ids[mine], full.species[mine]
                reducer.charges, reducer.positions = full.charges[mine], full.positions[mine]
            elif isinstance(reducer, TimeCorrelation) or name == "time_correlation":
                full = Reducer.registry[kind].from_state(state)
                mine = full.ids % size == rank
                reducer.ids, reducer.species = full.ids[mine], full.species[mine]
                reducer.history, reducer.filled = full.history[mine], full.filled[mine]
            self.reducers[name] = reducer

    def write(self, step: int) -> None:
        """Write PREFIX.reduce.npz and PREFIX.summary.json (rank 0; collective)."""
        merged = self._global()
        if self.prefix is None or (self.comm is not None and self.comm.rank != 0):
            return
        moments: RunningMoments = merged["moments"]  # type: ignore[assignment]
        series: BlockingError = merged["mean_series"]  # type: ignore[assignment]
        summary = {
            **lambda_summary(moments, series, self.model.metadata.species,
                             "mean over evaluations of the group mean of lambda; error by blocking "
                             "of that series"),
            **({"einstein_helfand": self._eh_summary(merged["einstein_helfand"])}  # type: ignore[arg-type]
               if "einstein_helfand" in merged else {}),
            "evaluations": int(series.n[0]), "step": int(step), "model": str(self.model.path),
            "source": "lammps fix localcond", "localcond_version": __version__,
        }
        save(Path(self.prefix + ".reduce.npz"), merged,
             {"source": "lammps", "model": str(self.model.path), "step": int(step)})
        path = Path(self.prefix + ".summary.json")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, path)


def open_session(model_path: str, type_species: Sequence[str | None], nprocs: int,
                 comm_handle: int, prefix: str | None, hist_lo: float, hist_hi: float,
                 hist_bins: int, nlags: int, corr_rmax: float, corr_bins: int,
                 group: str, eh_lags: int, eh_block: int, eh_temperature: float) -> FixSession:
    """Load and validate the model for a fix on one MPI rank; ``comm_handle`` is the
    Fortran handle of LAMMPS's communicator (reducers run on it, not COMM_WORLD)."""
    if "OMP_NUM_THREADS" not in os.environ:
        # one torch thread per rank unless the user says otherwise: torch's own default (all
        # cores) competes with LAMMPS and with other ranks on busy machines
        torch.set_num_threads(1)
    comm = None
    if nprocs > 1:
        from mpi4py import MPI

        comm = MPI.Comm.f2py(comm_handle)
    histogram = (hist_lo, hist_hi, hist_bins) if hist_bins > 0 else None
    correlation = (corr_rmax, corr_bins) if corr_bins > 0 else None
    eh = (eh_lags, eh_block, eh_temperature) if eh_lags > 0 else None
    return FixSession(load_model(model_path), type_species, comm, prefix, histogram, nlags,
                      correlation, group, eh)


def _emptied(reducer: Reducer) -> Reducer:
    """The same reducer with its additive sums zeroed (histories handled by the caller)."""
    state = {k: np.array(v, copy=True) for k, v in reducer.state().items()}
    for key in ("count", "mean", "m2", "counts", "sums"):
        if key in state:
            state[key][...] = 0.0
    out = type(reducer).from_state(state)
    if isinstance(out, TimeCorrelation):
        out.ids = out.ids[:0]
        out.species = out.species[:0]
        out.history = out.history[:0]
        out.filled = out.filled[:0]
    return out

