"""The Python side of ``fix localcond`` (plugin/fix_localcond.cpp).

The plugin's one Python client (plugin/python_session.cpp) calls
:func:`open_session` once per fix on every MPI rank, then per evaluation
``FixSession.evaluate`` (the model, local to the rank) and
``FixSession.observe`` (the statistics, collective), with memoryviews over
the fix's own buffers (no copies), and ``FixSession.vector`` (local) when
LAMMPS reads the fix's global vector after an evaluation. Every call across
the boundary passes keyword arguments and every result that has more than one
field is a dictionary read by name in C++ (:meth:`FixSession.layout`,
:meth:`FixSession.vector`), so adding a field cannot shift another.
The fix's keywords are validated here, by the one option schema
(:mod:`localcond.engine.options`). Exceptions propagate to C++, which agrees
on them across ranks (collective calls) or stops the rank (``vector``) and
turns the message into a LAMMPS error.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from localcond import __version__
from localcond.errors import ModelOutputError
from localcond.io.files import check_writable_prefix
from localcond.engine.domain import (WARN_AFTER, descriptor_features, dynamics_note, outside_note,
                                    structure_note)
from localcond.engine.neighbors import smallest_periodic_width
from localcond.engine.options import MANGLED, FixOptions, KEYWORD_NAMES, fix_usage, is_text, parse_fix_keywords
from localcond.engine.reducers.reducer_set import ReducerSet
from localcond.engine.reducers.timeline import Evaluation
from localcond.engine.runtime import LoadedModel, evaluate_descriptors, evaluate_members, load_model, n_members
from localcond.engine.species import check_charge_ranges, map_types


def describe(model: LoadedModel, indices: list[int]) -> str:
    md = model.metadata
    lines = [f"  model {model.path}: {md.kind}"]
    if md.purpose == "test":
        lines.append("  NOTE: reference model, an analytic test function (model purpose 'test'), "
                     "not a trained conductivity model")
    elif not md.trained:
        lines.append("  WARNING: untrained model (random weights): its values mean nothing")
    lines.append(
        f"  {md.reach()}, "
        f"{md.dtype}, contract v{md.contract_version}; output lambda in {md.units['output']}"
    )
    if not md.species_share_validated:
        lines.append(f"  WARNING: f_ID[9] (the share of Lambda_pred carried by species {md.species[0]}) is NaN: "
                     "this model's split of lambda between species was not validated against measured "
                     "shares of Lambda_EH on held-out systems (model metadata 'validation'); f_ID[8] "
                     "with eh is the measured share")
    lines.append(f"  torch threads per rank: {torch.get_num_threads()} (OMP_NUM_THREADS sets it; default 1)")
    lines.append("  type  species  charge(e)")
    for t, index in enumerate(indices, start=1):
        if index < 0:
            lines.append(f"  {t:4d}  NULL     (excluded)")
        else:
            lines.append(f"  {t:4d}  {md.species[index]:<8s} {md.charges[index]:+g}")
    return "\n".join(lines)


def _array(views: dict[str, memoryview], name: str, dtype: type) -> np.ndarray:
    return np.frombuffer(views[name], dtype=dtype)


# File prefixes in this process (absolute paths): the fix that holds each, and those an
# earlier fix wrote. Every rank registers the same fixes, so every rank refuses alike.
_HOLDERS: dict[str, "weakref.ref[FixSession]"] = {}
_WRITTEN: dict[str, int] = {}  # prefix -> the serial number of the fix that wrote it
_SERIALS = itertools.count()


def _claim_prefix(prefix: str, session: "FixSession") -> str:
    """Refuse a prefix that a live fix holds (two fixes would overwrite each other's files)."""
    key = os.path.abspath(prefix)
    holder = _HOLDERS.get(key)
    if holder is not None and holder() is not None:
        raise ValueError(f"file prefix '{prefix}' is already used by another fix localcond: the two would "
                         "overwrite each other's files; give each fix its own prefix")
    _HOLDERS[key] = weakref.ref(session)
    return key


class FixSession:
    """One ``fix localcond`` instance: its model, type map and reducer set."""

    def __init__(self, model: LoadedModel, type_species: Sequence[str | None], options: FixOptions,
                 group: str = "all", comm: Any = None) -> None:
        self.model, self.comm, self.options = model, comm, options
        self.prefix, self.write_every = options.file, options.every
        self.prefix_key = None
        if self.prefix is not None:
            check_writable_prefix(self.prefix)
            self.prefix_key = _claim_prefix(self.prefix, self)
        self.restored = False  # statistics continued from a restart file
        self.serial = next(_SERIALS)
        md = model.metadata
        self.reducers = ReducerSet(options.reducers, md.species, md.charges, comm, "domains",
                                   share_validated=md.species_share_validated, n_members=n_members(model))
        # an ensemble: each member's sum of λ over this rank's ions at the last evaluation
        self.member_sums = np.zeros(n_members(model)) if n_members(model) > 1 else None
        self.identity = {"model": md.to_json(), "group": group, "types": [s or "NULL" for s in type_species],
                         "options": options.reducers.to_dict()}
        self.type_species_index = map_types(md, type_species)
        self.type_charge = [md.charges[i] if i >= 0 else float("nan") for i in self.type_species_index]
        self.summary = describe(model, self.type_species_index)
        self.observed = 0
        self.domain_checked = False
        # the structure check (engine/domain.py): this rank's sums of the descriptors per
        # species and its ion count over the evaluations before the check; None without a domain
        domain = (md.training or {}).get("domain") if md.trained else None
        # (the group "all" only: the training systems' features cover all their ions)
        self.domain_sums = np.zeros(len(domain["mean"]) + 1) if (domain and group == "all"
                                                                 and hasattr(model.module, "descriptors")) else None
        self.dynamics_logged: str | None = None

    def layout(self) -> dict[str, Any]:
        """What the plugin needs once, by name: the model's cutoffs (the output nodes' edges,
        the other nodes') and receptive field (Å)
        and layers, per-type species index (−1 excluded) and charge (e), the number of
        species, the description for the log, and the validated keywords the C++ side
        acts on (neighbour path, molecular ions, file prefix and write interval, corr's
        RMAX and bins — 0 when off —, whether eh is on)."""
        md, options = self.model.metadata, self.options
        corr = options.reducers.corr
        return {"cutoff": float(md.cutoff), "inner_cutoff": float(md.edge_cutoff_inner),
                "receptive_field": float(md.receptive_field),
                "n_layers": int(md.n_layers), "type_species_index": list(self.type_species_index),
                "type_charge": list(self.type_charge), "summary": self.summary, "n_species": len(md.species),
                "neighbors": options.neighbors, "molecules": options.molecules,
                "file": options.file or "", "every": options.every,
                "corr_rmax": corr.rmax if corr else 0.0, "corr_bins": corr.bins if corr else 0,
                "eh": options.reducers.eh is not None}

    def check_dynamics(self, *, mass_min: Sequence[float], mass_max: Sequence[float],
                       fix_styles: Sequence[str]) -> str:
        """Every type's lowest and highest mass (all ranks) and the run's fix styles against
        the training dynamics in the model's metadata (:func:`dynamics_note`): the warning
        to log, once per fix while it stays the same; empty when none. ``fix_styles`` empty:
        no fix integrates (a rerun), and the thermostat is not checked."""
        note = dynamics_note(self.model.metadata, self.type_species_index, mass_min, mass_max,
                             list(fix_styles) or None) or ""
        if note == self.dynamics_logged:
            return ""
        self.dynamics_logged = note
        return note

    def check_charges(self, *, q_min: Sequence[float], q_max: Sequence[float]) -> None:
        """Every type's lowest and highest charge (e, over all ranks; min > max: no atoms)
        against its species' charge: :func:`localcond.engine.species.check_charge_ranges`."""
        what = "molecular ions centred on atoms of type" if self.options.molecules else "atoms of type"
        check_charge_ranges(self.model.metadata, [(f"{what} {t}", index, lo, hi) for t, (index, lo, hi)
                                                  in enumerate(zip(self.type_species_index, q_min, q_max), start=1)])

    def evaluate(self, *, step: int, species: memoryview, edge_index: memoryview, edge_vec: memoryview,
                 ids: memoryview, n_local: int, out: memoryview) -> float:
        """Fill ``out`` with λ for the first ``n_local`` nodes (local to this rank);
        return the model's wall time in seconds."""
        species_a = np.frombuffer(species, dtype=np.int64)
        edge_index_a = np.frombuffer(edge_index, dtype=np.int64).reshape(2, -1)
        edge_vec_a = np.frombuffer(edge_vec, dtype=np.float64).reshape(-1, 3)
        start = time.perf_counter()
        try:
            values, members = evaluate_members(self.model, species_a, edge_index_a, edge_vec_a, n_local)
        except ModelOutputError as exc:
            if exc.bad_nodes:
                atom_ids = np.sort(np.frombuffer(ids, dtype=np.int64)[exc.bad_nodes])
                shown = ", ".join(str(i) for i in atom_ids[:5])
                more = ", ..." if len(atom_ids) > 5 else ""
                raise ModelOutputError(f"{exc} for atom IDs {shown}{more} at step {step}") from None
            raise
        elapsed = time.perf_counter() - start
        np.frombuffer(out, dtype=np.float64)[:] = values
        if members is not None:
            self.member_sums = members.sum(axis=1)
        if self.domain_sums is not None and not self.domain_checked:
            p = evaluate_descriptors(self.model, species_a, edge_index_a, edge_vec_a, n_local)
            if p is not None:
                self.domain_sums += np.append(descriptor_features(species_a[:n_local], p,
                                                                  len(self.model.metadata.species)), n_local)
        return elapsed

    def observe(self, *, step: int, dt_ps: float, nevery: int, phase: str, moved: str | None,
                views: dict[str, memoryview]) -> str:
        """Feed the statistics with this evaluation (collective). ``views``: ``species``,
        ``ids`` (int64), ``lambda`` (float64) of the evaluated ions; with ``eh`` also
        ``charges``, ``positions`` (unwrapped, Å), ``cell`` (rows a, b, c, Å) and ``pbc``
        (1.0 per periodic dimension), whence the longest step an ion may take between
        evaluations; with ``corr`` ``pair_sums``, the
        pairs' sums binned by the plugin (:meth:`PairCorrelation.add`). Returns the notes
        to log (one string, empty when none)."""
        if (self.observed == 0 and self.prefix_key is not None and not self.restored
                and _WRITTEN.get(self.prefix_key, self.serial) != self.serial):
            raise ValueError(f"an earlier fix localcond in this process wrote '{self.prefix}.reduce.npz' and "
                             f"'{self.prefix}.summary.json'; this fix would overwrite them (unfix, then a new "
                             "fix with the same file prefix): give it another prefix, or carry the statistics "
                             "on through write_restart and read_restart")
        pair_sums = None
        if "pair_sums" in views:
            n = len(self.model.metadata.species)
            pair_sums = _array(views, "pair_sums", np.float64).reshape(4, n, n, -1)
        positions = _array(views, "positions", np.float64) if "positions" in views else None
        charges = _array(views, "charges", np.float64) if "charges" in views else None
        jump_limit = math.inf
        if "cell" in views:
            jump_limit = 0.5 * smallest_periodic_width(_array(views, "cell", np.float64).reshape(3, 3),
                                                       _array(views, "pbc", np.float64) > 0)
        notes = self.reducers.observe(
            Evaluation(int(step), float(dt_ps), int(nevery), phase, moved or None),
            _array(views, "lambda", np.float64), _array(views, "species", np.int64),
            _array(views, "ids", np.int64), charges, positions, pair_sums, jump_limit,
            member_sums=self.member_sums)
        self.observed += 1
        if not self.domain_checked and self.reducers.evaluations >= WARN_AFTER:
            self.domain_checked = True  # once per fix: see localcond.engine.domain
            note = outside_note(self.model.metadata, self.reducers.observed().lambda_pred)
            if note:
                notes = [*notes, note]
            if self.domain_sums is not None:  # collective: every rank reaches this check at once
                totals = self.reducers.global_sum(self.domain_sums)
                note = structure_note(self.model.metadata, totals[:-1] / totals[-1]) if totals[-1] else None
                if note:
                    notes = [*notes, note]
        if self.prefix is not None and self.write_every and self.observed % self.write_every == 0:
            self.write(step)
        return "\n".join(notes)

    def vector(self) -> dict[str, float]:
        """The fix's global vector after the last evaluation, by name in the order of
        f_ID[1..10]: local to the rank, no communication (the plugin asks only when
        LAMMPS reads f_ID[i])."""
        return self.reducers.observed().as_dict()

    def write(self, step: int) -> None:
        """Write PREFIX.reduce.npz and PREFIX.summary.json (collective; rank 0 writes)."""
        if self.prefix is None:
            return
        source = {"source": "lammps fix localcond", "model": str(self.model.path),
                  "model_id": self.model.metadata.fingerprint(), "group": self.identity["group"],
                  "step": int(step), "localcond_version": __version__}
        self.reducers.write(self.prefix, source, source,
                            "mean over evaluations of the group mean of lambda; error by blocking of that series")
        _WRITTEN[os.path.abspath(self.prefix)] = self.serial

    def state_bytes(self) -> bytes:
        return self.reducers.state_bytes(self.identity)

    def restore(self, data: bytes) -> None:
        self.reducers.restore(data, self.identity)
        self.restored = True


def open_session(*, model_path: str, type_species: Sequence[str | None], keywords: Sequence[str],
                 group: str, nprocs: int, comm_handle: int) -> FixSession:
    """Load and validate the model and the fix's keywords (the words after its
    ``types`` list, :func:`localcond.engine.options.parse_fix_keywords`) for a fix on
    one MPI rank. ``comm_handle`` is the Fortran handle of LAMMPS's communicator (the
    statistics run on it, not on COMM_WORLD)."""
    options = parse_fix_keywords(list(keywords))
    if not is_text(model_path):
        raise ValueError(f"the model path {ascii(model_path)} {MANGLED}: use a path of ASCII characters "
                         "(a symbolic link will do)")
    if "OMP_NUM_THREADS" not in os.environ:
        # one torch thread per rank unless the user says otherwise: torch's own default (all
        # cores) competes with LAMMPS and with other ranks on busy machines
        torch.set_num_threads(1)
    comm = None
    if nprocs > 1:
        from mpi4py import MPI

        comm = MPI.Comm.f2py(comm_handle)
    return FixSession(load_model(model_path), type_species, options, group, comm)


def keywords(ntypes: int) -> dict[str, Any]:
    """The fix's keyword names and usage line (the schema published to the C++ parser)."""
    return {"names": list(KEYWORD_NAMES), "usage": fix_usage(ntypes)}
