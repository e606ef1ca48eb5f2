"""ASE interface: :class:`LocalConductivity`, a calculator giving each atom its
local molar conductivity λ_i (S cm² mol⁻¹) from a localcond model, through the
same runtime and model contract as the LAMMPS fix.

    from localcond.engine.ase import LocalConductivity
    atoms.calc = LocalConductivity("model.pt", species={"Li": "Li", "P": "PF6"},
                                   calculator=EMT())        # optional base calculator
    lam = atoms.calc.get_property("local_conductivity", atoms)

Species come from chemical symbols, mapped to the model's species names by
``species`` (default: the symbol itself). Atoms whose symbol maps to ``None``
are excluded (λ = 0, not neighbors), like NULL types in LAMMPS. If the atoms
carry initial charges, they are checked against the model's species charges.
With ``molecules=True`` (molecule IDs in ``atoms.arrays["mol-id"]``, as ASE's
LAMMPS data reader gives them), an atom of a mapped species is the centre of a
molecular ion and its molecule's total charge is what is checked, as with the
fix's ``molecules yes`` (e.g. ``species={"Li": "Li", "P": "PF6", "F": None}``).
Energy, forces and the rest come from ``calculator`` when one is wrapped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from localcond.errors import LocalcondError
from localcond.engine.neighbors import periodic_edges
from localcond.engine.runtime import LoadedModel, evaluate_members, load_model
from localcond.engine.species import check_charge_ranges, index_of, molecule_charges

LOCAL_PROPERTIES = ["local_conductivity", "mean_local_conductivity"]


class LocalConductivity(Calculator):
    """λ per atom from a localcond model, optionally on top of another calculator."""

    implemented_properties = list(LOCAL_PROPERTIES)

    def __init__(self, model: str | Path | LoadedModel, species: dict[str, str | None] | None = None,
                 calculator: Calculator | None = None, molecules: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.molecules = molecules
        try:
            self.model = model if isinstance(model, LoadedModel) else load_model(model)
        except LocalcondError as exc:
            raise ValueError(str(exc)) from None
        self.species = dict(species or {})
        unknown = {v for v in self.species.values() if v is not None} - set(self.model.metadata.species)
        if unknown:
            raise ValueError(f"species map names {sorted(unknown)}, which the model does not know; "
                             f"the model's species are {', '.join(self.model.metadata.species)}")
        self.base = calculator
        self.implemented_properties = list(LOCAL_PROPERTIES) + (
            [p for p in calculator.implemented_properties if p not in LOCAL_PROPERTIES]
            if calculator is not None else [])

    def species_indices(self, atoms) -> np.ndarray:
        """Per atom, its model species index (−1: excluded, its symbol mapped to None)."""
        known = self.model.metadata.species
        out = np.empty(len(atoms), dtype=np.int64)
        for k, symbol in enumerate(atoms.get_chemical_symbols()):
            index = index_of(self.model.metadata, self.species.get(symbol, symbol))
            if index is not None:
                out[k] = index
            else:
                hint = "" if symbol in self.species else " (map it with species={...})"
                raise ValueError(f"atom {k} ({symbol}) has no species in the model{hint}; the model's "
                                 f"species are {', '.join(known)}")
        return out

    def _check(self, atoms, indices: np.ndarray) -> None:
        if not np.all(atoms.pbc):
            raise ValueError(f"LocalConductivity needs a periodic system (pbc = {atoms.pbc.tolist()}); "
                             "set atoms.pbc = True and a cell")
        if abs(atoms.cell.volume) < 1e-12:
            raise ValueError("LocalConductivity needs a cell with non-zero volume; set atoms.cell")
        bad = ~np.isfinite(atoms.positions).all(axis=1)
        if bad.any():
            raise ValueError(f"atom {int(np.flatnonzero(bad)[0])} has a non-finite position "
                             f"{atoms.positions[bad][0].tolist()}")
        charges = atoms.get_initial_charges()
        if self.molecules and np.any(charges != 0):
            if "mol-id" not in atoms.arrays:
                raise ValueError("molecules=True needs molecule IDs in atoms.arrays['mol-id'] (as "
                                 "ase.io.read(..., format='lammps-data') gives them)")
            centre = indices >= 0
            charges = charges.copy()
            try:
                charges[centre] = molecule_charges("atoms", np.arange(1, len(atoms) + 1),
                                                   atoms.arrays["mol-id"], charges, centre)
            except LocalcondError as exc:
                raise ValueError(str(exc)) from None
        if np.any(charges != 0):
            groups = []
            for index in sorted(set(indices[indices >= 0].tolist())):
                q = charges[indices == index]
                groups.append(("molecular ions" if self.molecules else "atoms", index, float(q.min()),
                               float(q.max())))
            try:
                check_charge_ranges(self.model.metadata, groups)
            except LocalcondError as exc:
                raise ValueError(str(exc)) from None

    def calculate(self, atoms=None, properties=("local_conductivity",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        wanted_base = [p for p in properties if p not in LOCAL_PROPERTIES]
        if wanted_base:
            if self.base is None:
                raise ValueError(f"{wanted_base} need a base calculator (calculator=...)")
            for name in wanted_base:
                self.results[name] = self.base.get_property(name, atoms)
        indices = self.species_indices(atoms)
        self._check(atoms, indices)
        evaluated = indices >= 0
        edge_index, edge_vec = periodic_edges(atoms.positions[evaluated], atoms.cell.array,
                                              tuple(atoms.pbc), self.model.metadata.cutoff)
        lam = np.zeros(len(atoms))
        lam[evaluated], members = evaluate_members(self.model, indices[evaluated], edge_index, edge_vec,
                                                   int(evaluated.sum()))
        self.results["local_conductivity"] = lam
        if members is not None:  # an ensemble: each member's λ [k, n_atoms] (0 off the ions)
            every = np.zeros((members.shape[0], len(atoms)))
            every[:, evaluated] = members
            self.results["local_conductivity_members"] = every
        self.results["mean_local_conductivity"] = float(lam[evaluated].mean()) if evaluated.any() else 0.0
