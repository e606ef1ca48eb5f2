"""The Python side of ``fix localcond`` (plugin/fix_localcond.cpp).

The C++ fix calls :func:`open_session` once per fix (on every MPI rank) and
``FixSession.evaluate`` every N steps with memoryviews over its own buffers
(no copies). Exceptions propagate to C++, which turns their message into a
LAMMPS error.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from localcond.errors import ModelOutputError
from localcond.model import reference
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
    lines.append("  type  species  charge(e)")
    for t, index in enumerate(indices, start=1):
        if index < 0:
            lines.append(f"  {t:4d}  NULL     (excluded)")
        else:
            lines.append(f"  {t:4d}  {md.species[index]:<8s} {md.charges[index]:+g}")
    return "\n".join(lines)


class FixSession:
    """One ``fix localcond`` instance's model and type map."""

    def __init__(self, model: LoadedModel, type_species: Sequence[str | None]) -> None:
        self.model = model
        md = model.metadata
        self.type_species_index = map_types(md, type_species)
        self.type_charge = [md.charges[i] if i >= 0 else math.nan for i in self.type_species_index]
        self.cutoff = float(md.cutoff)
        self.receptive_field = float(md.receptive_field)
        self.n_layers = int(md.n_layers)
        self.summary = describe(model, self.type_species_index)

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


def open_session(model_path: str, type_species: Sequence[str | None], nprocs: int) -> FixSession:
    """Load and validate the model for a fix on one MPI rank."""
    if nprocs > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # one thread per MPI rank unless the user says otherwise
    return FixSession(load_model(model_path), type_species)
