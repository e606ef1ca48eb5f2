"""An observer for ASE dynamics that feeds the shared reducers with λ:

    obs = ConductivityObserver(atoms, LocalConductivity("model.pt", ...), "run1",
                               hist=(-50, 50, 100), tcorr=50, corr=(12.0, 24),
                               eh=(100, 200, 298.0), interval_ps=0.04)
    dyn.attach(obs, interval=10)   # a call every 10 steps of 4 fs: interval_ps = 0.04
    dyn.run(10000)
    obs.write()          # also every `write_every` calls

The reducer options have the names and meanings of the fix's keywords (one
schema: :mod:`localcond.engine.options`): ``hist`` (LO, HI, NBINS), ``tcorr``
NLAGS, ``corr`` (RMAX Å, NBINS), ``eh`` (NLAGS, BLOCK, TEMP K). ``eh`` needs
``interval_ps``, the time between calls, and unwrapped positions (ASE's
dynamics do not wrap atoms into the cell unless asked to; an ion that moves
half the cell between calls is refused as wrapped); each ion carries
its model species' charge. ``corr`` bins the pairs of evaluated ions within
RMAX by :meth:`PairCorrelation.update`.

Files: ``PREFIX.reduce.npz`` (reducer states, :mod:`localcond.engine.reducers.store`)
and ``PREFIX.summary.json`` (Λ_pred = mean of λ over ions and calls with its
blocking error, per-species means and standard deviations), written to a
temporary name and renamed. Under MPI (independent replicas, one per rank,
``comm`` an mpi4py communicator) the reducers are merged across ranks and rank
0 writes; ion IDs are offset by rank so histories never collide.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from localcond import __version__
from localcond.engine.ase import LocalConductivity
from localcond.engine.domain import WARN_AFTER, descriptor_features, dynamics_note, outside_note, structure_note
from localcond.io.files import check_writable_prefix
from localcond.engine.neighbors import periodic_edges, smallest_periodic_width
from localcond.engine.options import ReducerOptions
from localcond.engine.reducers.reducer_set import ReducerSet
from localcond.engine.reducers.spatial import PairCorrelation
from localcond.engine.reducers.timeline import Evaluation
from localcond.engine.runtime import evaluate_descriptors, n_members


class ConductivityObserver:
    def __init__(self, atoms: Any, calculator: LocalConductivity, prefix: str | Path,
                 hist: tuple[float, float, int] | None = None, tcorr: int | None = None,
                 corr: tuple[float, int] | None = None, eh: tuple[int, int, float] | None = None,
                 interval_ps: float | None = None, write_every: int | None = None, comm: Any = None) -> None:
        self.atoms = atoms
        self.calc = calculator
        self.prefix = Path(prefix)
        check_writable_prefix(str(self.prefix))
        self.comm = comm
        self.write_every = write_every
        self.calls = 0
        options = ReducerOptions.from_dict({name: value for name, value in
                                            (("hist", hist), ("tcorr", tcorr), ("corr", corr), ("eh", eh))
                                            if value is not None})
        if options.eh is not None and not (interval_ps is not None and interval_ps > 0):
            raise ValueError("eh needs interval_ps, the time between the observer's calls in ps "
                             "(the dynamics' timestep times the attach interval)")
        self.interval_ps = interval_ps
        md = calculator.model.metadata
        self.charges = np.asarray(md.charges, dtype=float)
        self.reducers = ReducerSet(options, md.species, md.charges, comm, "replicas",
                                   share_validated=md.species_share_validated,
                                   n_members=n_members(calculator.model))
        self.domain_checked = False
        # the structure check (engine/domain.py): descriptor sums per species and the ion count
        domain = (md.training or {}).get("domain") if md.trained else None
        self.domain_sums = (np.zeros(len(domain["mean"]) + 1)
                            if domain and hasattr(calculator.model.module, "descriptors") else None)
        self.dynamics_checked = False

    def __call__(self) -> None:
        lam = self.calc.get_property("local_conductivity", self.atoms)
        if not self.dynamics_checked:
            self.dynamics_checked = True
            self._check_masses()
        members = self.calc.results.get("local_conductivity_members")
        species = self.calc.species_indices(self.atoms)
        evaluated = species >= 0
        offset = (self.comm.rank if self.comm is not None else 0) * len(self.atoms)
        ids = np.flatnonzero(evaluated) + 1 + offset  # replicas never share an ID
        options = self.reducers.options
        positions = self.atoms.get_positions()[evaluated] if options.eh is not None else None
        charges = self.charges[species[evaluated]] if options.eh is not None else None
        pair_sums = self._pair_sums(evaluated, lam[evaluated], species[evaluated]) if options.corr is not None else None
        # without interval_ps, lags count calls (the observer does not know the dynamics' timestep)
        self.reducers.observe(Evaluation(self.calls, self.interval_ps, 1, "run"), lam[evaluated],
                              species[evaluated], ids, charges, positions, pair_sums,
                              0.5 * smallest_periodic_width(self.atoms.cell.array, self.atoms.pbc),
                              member_sums=members[:, evaluated].sum(axis=1) if members is not None else None)
        self.calls += 1
        if self.domain_sums is not None and not self.domain_checked:
            self._add_descriptors(evaluated, species[evaluated])
        if not self.domain_checked and self.reducers.evaluations >= WARN_AFTER:
            self.domain_checked = True  # once: see localcond.engine.domain
            notes = [outside_note(self.calc.model.metadata, self.reducers.observed().lambda_pred)]
            if self.domain_sums is not None and self.domain_sums[-1] > 0:  # this replica's own structure
                notes.append(structure_note(self.calc.model.metadata, self.domain_sums[:-1] / self.domain_sums[-1]))
            for note in filter(None, notes):
                warnings.warn(note, stacklevel=2)
        if self.write_every and self.calls % self.write_every == 0:
            self.write()

    def _check_masses(self) -> None:
        """The atoms' masses per model species against the training dynamics (engine/domain.py;
        the thermostat of ASE dynamics is not known here and is not checked)."""
        species = self.calc.species_indices(self.atoms)
        masses = self.atoms.get_masses()
        n = len(self.charges)
        lo = [float(masses[species == s].min()) if np.any(species == s) else np.inf for s in range(n)]
        hi = [float(masses[species == s].max()) if np.any(species == s) else -np.inf for s in range(n)]
        note = dynamics_note(self.calc.model.metadata, list(range(n)), lo, hi, None, by_type=False)
        if note:
            warnings.warn(note, stacklevel=3)

    def _add_descriptors(self, evaluated: np.ndarray, species: np.ndarray) -> None:
        atoms = self.atoms
        edge_index, edge_vec = periodic_edges(atoms.get_positions()[evaluated], atoms.cell.array, tuple(atoms.pbc),
                                              self.calc.model.metadata.cutoff)
        p = evaluate_descriptors(self.calc.model, species, edge_index, edge_vec, int(evaluated.sum()))
        assert self.domain_sums is not None and p is not None
        self.domain_sums += np.append(descriptor_features(species, p, len(self.charges)), evaluated.sum())

    def _pair_sums(self, evaluated: np.ndarray, lam: np.ndarray, species: np.ndarray) -> np.ndarray:
        """This call's pair sums [4, S, S, bins] over ordered pairs of evaluated ions within RMAX."""
        corr = self.reducers.options.corr
        assert corr is not None
        atoms = self.atoms
        (i, j), vec = periodic_edges(atoms.get_positions()[evaluated], atoms.cell.array, tuple(atoms.pbc),
                                     corr.rmax)
        pairs = PairCorrelation(corr.rmax, corr.bins, len(self.charges))
        pairs.update(lam[i], lam[j], species[i], species[j], np.linalg.norm(vec, axis=1))
        return pairs.sums

    DEFINITION = ("mean over calls of the mean of lambda over ions; error by blocking of that series "
                  "(pooled over replicas)")

    def _info(self) -> dict:
        return {"source": "ase", "model": str(self.calc.model.path),
                "model_id": self.calc.model.metadata.fingerprint(), "calls": self.calls,
                "replicas": self.comm.size if self.comm is not None else 1, "localcond_version": __version__}

    def summary(self) -> dict:
        """The numbers PREFIX.summary.json holds (collective under MPI)."""
        return {**self.reducers.summary(self.reducers.merged(), self.DEFINITION), **self._info()}

    def write(self) -> None:
        """Write PREFIX.reduce.npz and PREFIX.summary.json (collective under MPI; rank 0 writes)."""
        self.reducers.write(str(self.prefix), self._info(), self._info(), self.DEFINITION)
