"""Map names to a model's species: LAMMPS atom types (the fix, ``predict``) and
ASE chemical symbols (the calculator) go through :func:`index_of`, by name (as
pair_nequip does)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from localcond.errors import DumpFormatError, TypeMapError
from localcond.model.contract import ModelMetadata

CHARGE_TOLERANCE = 1e-5  # e


def index_of(metadata: ModelMetadata, name: str | None) -> int | None:
    """The model's index of species ``name``; −1 for None or NULL (excluded); None
    when the model does not know the name."""
    if name is None or name.upper() == "NULL":
        return -1
    return metadata.species.index(name) if name in metadata.species else None


def map_types(metadata: ModelMetadata, type_species: Sequence[str | None]) -> list[int]:
    """Species index per atom type (type t at position t−1); −1 for NULL (excluded)."""
    known = metadata.species
    indices = []
    for t, name in enumerate(type_species, start=1):
        index = index_of(metadata, name)
        if index is not None:
            indices.append(index)
        else:
            raise TypeMapError(
                f"atom type {t} is mapped to species '{name}', which the model does not know; "
                f"the model's species are {', '.join(known)} (use NULL to exclude a type)"
            )
    if all(i < 0 for i in indices):
        raise TypeMapError("every atom type is NULL: no atom would be evaluated")
    return indices


def check_charge_ranges(metadata: ModelMetadata, groups: Sequence[tuple[str, int, float, float]]) -> None:
    """The one charge rule, for the fix (per atom type, min and max over all ranks),
    ``predict`` (per type) and the ASE calculator (per species): every atom of a group
    mapped to a model species carries that species' charge within CHARGE_TOLERANCE.
    ``groups``: (what the atoms are, e.g. "atoms of type 1", species index, lowest and
    highest charge in e); excluded groups (index < 0) and empty ones (min > max) pass."""
    for who, index, q_min, q_max in groups:
        if index < 0 or q_min > q_max:
            continue
        expected = metadata.charges[index]
        name = metadata.species[index]
        if max(abs(q_min - expected), abs(q_max - expected)) > CHARGE_TOLERANCE:
            raise TypeMapError(
                f"{who} (species {name}) have charges from {q_min:.6g} to {q_max:.6g} e, but the model's "
                f"species {name} has charge {expected:.6g} e; fix the charges or the species map")


def check_charges(metadata: ModelMetadata, indices: Sequence[int], types: np.ndarray, charges: np.ndarray) -> None:
    """:func:`check_charge_ranges` per atom type t (indices[t−1] its species) of one frame."""
    groups = []
    for t, index in enumerate(indices, start=1):
        q = charges[types == t]
        groups.append((f"atoms of type {t}", index, float(q.min()) if q.size else np.inf,
                       float(q.max()) if q.size else -np.inf))
    check_charge_ranges(metadata, groups)


def molecule_charges(where: str, ids: np.ndarray, mol: np.ndarray, charges: np.ndarray,
                     centre: np.ndarray) -> np.ndarray:
    """The charge (e) of each ion whose centre atom is marked in ``centre`` (arrays per atom):
    the total charge of its molecule (LAMMPS molecule ID ``mol``; 0 = no molecule, the atom
    is the ion). Refuses two centres in one molecule, a neutral ion, and a charged molecule
    without a centre (an ion split over a NULL type)."""
    mol = np.asarray(mol).astype(np.int64)
    if np.any(mol < 0):
        raise DumpFormatError(f"{where}: negative molecule IDs")
    in_molecule = mol > 0
    totals = np.zeros(int(mol.max()) + 1 if mol.size else 1)
    np.add.at(totals, mol[in_molecule], charges[in_molecule])
    centres = np.flatnonzero(centre)
    owners = mol[centres]
    molecular = owners > 0
    unique, first, counts = np.unique(owners[molecular], return_index=True, return_counts=True)
    if np.any(counts > 1):
        m = int(unique[counts > 1][0])
        both = ids[centres[molecular][owners[molecular] == m]][:2]
        raise DumpFormatError(f"{where}: molecule {m} holds two atoms of ion types (IDs {both[0]} and {both[1]}); "
                              "one atom per molecular ion is its centre, map the others to NULL")
    out = np.where(molecular, totals[owners], charges[centres])
    neutral = np.abs(out) < 1e-6
    if neutral.any():
        raise DumpFormatError(f"{where}: the ion of atom {ids[centres][neutral][0]} (molecule "
                              f"{owners[neutral][0]}) has total charge {out[neutral][0]:.6g} e: not an ion")
    charged = np.flatnonzero(np.abs(totals) > 1e-6)
    orphans = np.setdiff1d(charged[charged > 0], unique)
    if orphans.size:
        raise DumpFormatError(f"{where}: molecule {orphans[0]} carries {totals[orphans[0]]:.6g} e but none of "
                              "its atoms is of an ion type: an ion split over a NULL type?")
    return out
