"""Edge lists for whole periodic (or partly periodic) systems, for offline
evaluation and ASE. Uses ASE's neighbor list, which handles triclinic cells
and cutoffs larger than half the box (several periodic images)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def periodic_edges(
    positions: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool], cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j, image) with 0 < |r_j + image − r_i| < cutoff.

    Returns ``edge_index`` int64 [2, n_edges] (center i, neighbor j) and
    ``edge_vec`` float64 [n_edges, 3] = r_j + image − r_i (Å). Sorted by center.
    """
    atoms = Atoms(positions=np.asarray(positions, dtype=np.float64), cell=cell, pbc=pbc)
    i, j, d = neighbor_list("ijD", atoms, float(cutoff), self_interaction=False)
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    order = np.argsort(i[keep], kind="stable")
    edge_index = np.stack([i[keep][order], j[keep][order]]).astype(np.int64)
    return edge_index, np.ascontiguousarray(d[keep][order], dtype=np.float64)
