"""Edge lists for whole periodic (or partly periodic) systems, for offline
evaluation, ASE and training. Uses vesin's cell-list neighbor search: time and
memory linear in the number of atoms whatever the box (a sparse 1000 Å box or a
near-flat cell), triclinic cells, per-direction periodicity, and cutoffs larger
than half the box (several periodic images of the same neighbor)."""

from __future__ import annotations

import math

from typing import Any

import numpy as np
from vesin import NeighborList


def periodic_edges(
    positions: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool], cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j, image) with 0 < |r_j + image − r_i| < cutoff.

    Returns ``edge_index`` int64 [2, n_edges] (center i, neighbor j) and
    ``edge_vec`` float64 [n_edges, 3] = r_j + image − r_i (Å). Sorted by center.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3))
    # vesin refuses cutoffs below ~1e-5 Å; search at 1e-3 Å and filter below
    search = NeighborList(cutoff=max(float(cutoff), 1e-3), full_list=True)
    i, j, d = search.compute(positions, np.asarray(cell, dtype=np.float64), [bool(p) for p in pbc],
                             quantities="ijD")
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    order = np.argsort(i[keep], kind="stable")
    edge_index = np.stack([i[keep][order], j[keep][order]]).astype(np.int64)
    return edge_index, np.ascontiguousarray(d[keep][order], dtype=np.float64)


def smallest_periodic_width(cell: np.ndarray, pbc: Any) -> float:
    """The smallest distance between opposite faces of the cell (Å, rows are the cell
    vectors) over its periodic directions: volume / |a_j × a_k| for direction i;
    infinity when none is periodic (the live Einstein-Helfand estimate refuses an ion
    that moves half of it between calls: a wrapped position, see
    :meth:`~localcond.engine.reducers.eh_live.SelfDisplacement.check_step`)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(float(np.linalg.det(cell)))
    widths = [volume / float(np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))) if periodic else math.inf
              for i, periodic in enumerate(np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)))]
    return min(widths)
