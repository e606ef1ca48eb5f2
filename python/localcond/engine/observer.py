"""An observer for ASE dynamics that feeds the shared reducers with λ:

    obs = ConductivityObserver(atoms, LocalConductivity("model.pt", ...), "run1",
                               histogram=(-50, 50, 100), nlags=50)
    dyn.attach(obs, interval=10)
    dyn.run(10000)
    obs.write()          # also every `write_every` calls

Files: ``PREFIX.reduce.npz`` (reducer states, :mod:`localcond.engine.reducers.store`)
and ``PREFIX.summary.json`` (Λ_pred = mean of λ over ions and calls with its
blocking error, per-species means and standard deviations), written to a
temporary name and renamed. Under MPI (independent replicas, one per rank,
``comm`` an mpi4py communicator) the reducers are merged across ranks and rank
0 writes; ion IDs are offset by rank so histories never collide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from localcond import __version__
from localcond.engine.ase import LocalConductivity
from localcond.io.files import check_writable_prefix
from localcond.engine.reducers.reducer_set import ReducerOptions, ReducerSet
from localcond.engine.reducers.timeline import Evaluation


class ConductivityObserver:
    def __init__(self, atoms: Any, calculator: LocalConductivity, prefix: str | Path,
                 histogram: tuple[float, float, int] | None = None, nlags: int | None = None,
                 write_every: int | None = None, comm: Any = None) -> None:
        self.atoms = atoms
        self.calc = calculator
        self.prefix = Path(prefix)
        check_writable_prefix(str(self.prefix))
        self.comm = comm
        self.write_every = write_every
        self.calls = 0
        options = {**({"hist": histogram} if histogram is not None else {}),
                   **({"tcorr": nlags} if nlags is not None else {})}
        md = calculator.model.metadata
        self.reducers = ReducerSet(ReducerOptions.from_dict(options), md.species, md.charges, comm, "replicas")

    def __call__(self) -> None:
        lam = self.calc.get_property("local_conductivity", self.atoms)
        species = self.calc._species_indices(self.atoms)
        evaluated = species >= 0
        offset = (self.comm.rank if self.comm is not None else 0) * len(self.atoms)
        ids = np.flatnonzero(evaluated) + 1 + offset  # replicas never share an ID
        # lags count calls (the observer does not know the dynamics' timestep)
        self.reducers.observe(Evaluation(self.calls, None, 1, "run"), lam[evaluated], species[evaluated], ids)
        self.calls += 1
        if self.write_every and self.calls % self.write_every == 0:
            self.write()

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
