"""Map names to a model's species: LAMMPS atom types (the fix, ``predict``) and
ASE chemical symbols (the calculator) go through :func:`index_of`, by name (as
pair_nequip does)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from localcond.errors import TypeMapError
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


def check_charges(
    metadata: ModelMetadata, indices: Sequence[int], types: np.ndarray, charges: np.ndarray
) -> None:
    """Every atom of a mapped type must carry its species' charge (within 1e-5 e)."""
    for t, index in enumerate(indices, start=1):
        if index < 0:
            continue
        q = charges[types == t]
        expected = metadata.charges[index]
        if q.size and np.max(np.abs(q - expected)) > CHARGE_TOLERANCE:
            raise TypeMapError(
                f"atoms of type {t} (species {metadata.species[index]}) have charges from "
                f"{q.min():.6g} to {q.max():.6g} e, but the model's species "
                f"{metadata.species[index]} has charge {expected:.6g} e"
            )
