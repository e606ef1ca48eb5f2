"""Ion trajectories with unwrapped positions, read from LAMMPS text dumps.

Every frame must hold ``id type q`` and unwrapped positions (``xu yu zu``, or ``x y z``
with the image flags ``ix iy iz``); atoms are sorted by ID; only
charged atoms (ions) are kept. The checks that make a trajectory usable for
transport: the same atoms with the same charges in every frame, frames in
increasing, equally spaced time, and a constant box volume. Failures raise
DumpFormatError naming the file and frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localcond.engine.species import molecule_charges
from localcond.errors import DumpFormatError
from localcond.io.lammps_dump import DumpFrame, read_dump


@dataclass(frozen=True)
class IonSet:
    """The ions of a trajectory (charged atoms, sorted by ID)."""

    ids: np.ndarray
    types: np.ndarray
    charges: np.ndarray
    volume_a3: float
    cell: np.ndarray
    pbc: tuple[bool, bool, bool]

    @property
    def n_ions(self) -> int:
        return len(self.ids)

    @property
    def species(self) -> np.ndarray:
        """The atom types present among the ions, sorted."""
        return np.unique(self.types)

    def species_index(self) -> np.ndarray:
        return np.searchsorted(self.species, self.types)


@dataclass(frozen=True)
class IonFrame:
    index: int
    timestep: int
    time_ps: float
    positions: np.ndarray  # unwrapped, Å, [n_ions, 3]
    dump: DumpFrame
    # Σ_a q_a r_a over every atom minus Σ_ions Q r_ion (e Å, [3]); only when asked for
    polarisation: np.ndarray | None = None


def count_frames(path: str | Path) -> int:
    """Number of frames, from a quick scan for 'ITEM: TIMESTEP' lines."""
    from localcond.io.lammps_dump import _open

    with _open(Path(path)) as handle:
        return sum(1 for line in handle if line.startswith("ITEM: TIMESTEP"))


def _refuse_partial_charges(where: str, types: np.ndarray, charges: np.ndarray) -> None:
    """Without a list of ion types, every charged atom counts as an ion: that is right for
    ions with integer charges only. Partial charges (a solvent's atoms, the atoms of a
    molecular ion) would make each charged atom an 'ion': refuse and ask for the types."""
    partial = np.abs(charges - np.rint(charges)) > 1e-3
    if partial.any():
        shown = sorted({(int(t), float(q)) for t, q in zip(types[partial], charges[partial])})[:4]
        listed = ", ".join(f"type {t}: q = {q:g} e" for t, q in shown)
        raise DumpFormatError(f"{where}: atoms with partial charges ({listed}) would each count as an ion; "
                              "say which atom types are ions with --types (NULL for the others, e.g. a "
                              "solvent's types)")


def ion_frames(path: str | Path, timestep_fs: float, ion_types: Sequence[int] | None = None,
               molecules: bool = False, polarisation: bool = False) -> Iterator[tuple[IonSet, IonFrame]]:
    """Yield (ions, frame) for every frame of one dump, checking consistency.

    The ions are the charged atoms, or, with ``ion_types``, the atoms of those types
    (all-atom inputs: a solvent's partially charged atoms are not ions). With
    ``molecules`` (the dump's ``mol`` column), each atom of an ion type is the centre
    of a molecular ion: the ion sits at that atom and carries its molecule's total
    charge (:func:`molecule_charges`); the other atoms of the molecule enter nothing.

    With ``polarisation``, each frame also carries P = Σ_a q_a r_a − Σ_ions Q r_ion
    (e Å, unwrapped positions of every atom in the dump, its own partial charges): the
    dipole of everything the ions' nodes leave out — the solvent's molecules and each
    molecular ion about its centre atom. ΔM + ΔP is then the current of every charged
    atom (:class:`localcond.campaign.labels.einstein_helfand.DisplacementAccumulator`)."""
    if molecules and ion_types is None:
        raise DumpFormatError("molecular ions need the ion types: the atom type of each ion's centre")
    if timestep_fs <= 0:
        raise DumpFormatError(f"the MD timestep must be positive, got {timestep_fs} fs")
    ions: IonSet | None = None
    previous_step: int | None = None
    spacing: int | None = None
    first_step = 0
    for frame in read_dump(path):
        where = f"{frame.path}, frame {frame.index} (step {frame.timestep})"
        if "q" not in frame.columns:
            raise DumpFormatError(f"{where}: no 'q' column; dump 'id type q xu yu zu' (or 'id type q x y z ix iy iz')")
        positions = frame.positions(unwrapped=True)
        order = np.argsort(frame.ids, kind="stable")
        charges = frame.columns["q"][order]
        if molecules:
            charged = np.isin(frame.types[order], np.asarray(ion_types))
            charges = charges.copy()
            charges[charged] = molecule_charges(where, frame.ids[order], frame.column("mol")[order], charges,
                                                charged)
        elif ion_types is None:
            charged = charges != 0.0
        else:
            charged = np.isin(frame.types[order], np.asarray(ion_types))
            if np.any(charges[charged] == 0.0):
                raise DumpFormatError(f"{where}: atoms of the ion types {list(ion_types)} must be charged; "
                                      f"atom {frame.ids[order][charged & (charges == 0.0)][0]} has q = 0")
        every = order
        order = order[charged]
        checked = every if polarisation else order
        bad = ~np.isfinite(positions[checked]).all(axis=1)
        if bad.any():
            raise DumpFormatError(f"{where}: atom {frame.ids[checked][bad][0]} has a non-finite position "
                                  f"{positions[checked][bad][0].tolist()}")
        p_vector = None
        if polarisation:
            p_vector = (frame.columns["q"][every] @ positions[every]
                        - charges[charged] @ positions[order])
        if ions is None:
            if ion_types is None:
                _refuse_partial_charges(where, frame.types[order], charges[charged])
            if not charged.any():
                raise DumpFormatError(f"{where}: no ions (" + ("no charged atoms" if ion_types is None else
                                      f"no atoms of types {list(ion_types)}") + ")")
            ions = IonSet(frame.ids[order], frame.types[order], charges[charged],
                          frame.volume, frame.cell.copy(), frame.pbc)
            first_step = frame.timestep
        else:
            if not np.array_equal(frame.ids[order], ions.ids) or not np.array_equal(
                frame.types[order], ions.types
            ):
                raise DumpFormatError(f"{where}: the ions (IDs or types) differ from frame 0")
            if not np.array_equal(charges[charged], ions.charges):
                raise DumpFormatError(f"{where}: ion charges differ from frame 0")
            if abs(frame.volume - ions.volume_a3) > 1e-9 * ions.volume_a3:
                raise DumpFormatError(
                    f"{where}: the box volume changed ({ions.volume_a3:.10g} -> {frame.volume:.10g} A^3); "
                    "conductivity needs a constant-volume (NVT) trajectory"
                )
            assert previous_step is not None
            if frame.timestep <= previous_step:
                raise DumpFormatError(
                    f"{where}: frames out of order (step {frame.timestep} after {previous_step})"
                )
            step = frame.timestep - previous_step
            if spacing is None:
                spacing = step
            elif step != spacing:
                raise DumpFormatError(
                    f"{where}: frames are not equally spaced ({step} steps after {spacing})"
                )
        previous_step = frame.timestep
        time_ps = (frame.timestep - first_step) * timestep_fs * 1e-3
        yield ions, IonFrame(frame.index, frame.timestep, time_ps, positions[order], frame, p_vector)
