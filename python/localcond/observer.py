"""An observer for ASE dynamics that feeds the shared reducers with λ:

    obs = ConductivityObserver(atoms, LocalConductivity("model.pt", ...), "run1",
                               histogram=(-50, 50, 100), nlags=50)
    dyn.attach(obs, interval=10)
    dyn.run(10000)
    obs.write()          # also every `write_every` calls

Files: ``PREFIX.reduce.npz`` (reducer states, :mod:`localcond.reduce.store`)
and ``PREFIX.summary.json`` (Λ_pred = mean of λ over ions and calls with its
blocking error, per-species means and standard deviations), written to a
temporary name and renamed. Under MPI (independent replicas, one per rank,
``comm`` an mpi4py communicator) the reducers are merged across ranks and rank
0 writes; ion IDs are offset by rank so histories never collide.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from localcond import __version__
from localcond.ase import LocalConductivity
from localcond.io.files import check_writable_prefix
from localcond.reduce.blocking import BlockingError
from localcond.reduce.histogram import Histogram
from localcond.reduce.moments import RunningMoments
from localcond.reduce.store import Reducer, allreduce, save
from localcond.reduce.summary import lambda_summary
from localcond.reduce.timecorr import TimeCorrelation


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
        n_species = len(calculator.model.metadata.species)
        self.reducers: dict[str, Reducer] = {"moments": RunningMoments(n_species),
                                             "mean_series": BlockingError()}
        if histogram is not None:
            lo, hi, bins = histogram
            self.reducers["histogram"] = Histogram(lo, hi, int(bins), n_species)
        if nlags is not None:
            self.reducers["time_correlation"] = TimeCorrelation(int(nlags), n_species)

    def __call__(self) -> None:
        lam = self.calc.get_property("local_conductivity", self.atoms)
        species = self.calc._species_indices(self.atoms)
        evaluated = species >= 0
        values, groups = lam[evaluated], species[evaluated]
        self.reducers["moments"].update(values, groups)
        self.reducers["mean_series"].update(values.mean())
        if "histogram" in self.reducers:
            self.reducers["histogram"].update(values, groups)
        if "time_correlation" in self.reducers:
            offset = (self.comm.rank if self.comm is not None else 0) * len(self.atoms)
            ids = np.flatnonzero(evaluated) + 1 + offset
            self.reducers["time_correlation"].update(ids, groups, values)
        self.calls += 1
        if self.write_every and self.calls % self.write_every == 0:
            self.write()

    def merged(self) -> dict[str, Reducer]:
        if self.comm is None:
            return {k: r.copy() for k, r in self.reducers.items()}
        return {k: allreduce(r, self.comm) for k, r in self.reducers.items()}

    def summary(self, reducers: dict[str, Reducer]) -> dict:
        moments: RunningMoments = reducers["moments"]  # type: ignore[assignment]
        series: BlockingError = reducers["mean_series"]  # type: ignore[assignment]
        return {
            **lambda_summary(moments, series, self.calc.model.metadata.species,
                             "mean over calls of the mean of lambda over ions; error by blocking "
                             "of that series (pooled over replicas)"),
            "calls": self.calls, "replicas": self.comm.size if self.comm is not None else 1,
            "model": str(self.calc.model.path), "localcond_version": __version__,
        }

    def write(self) -> None:
        reducers = self.merged()
        if self.comm is not None and self.comm.rank != 0:
            return
        summary = self.summary(reducers)
        save(self.prefix.with_name(self.prefix.name + ".reduce.npz"), reducers,
             {"source": "ase", "model": summary["model"], "calls": self.calls})
        path = self.prefix.with_name(self.prefix.name + ".summary.json")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, path)

