"""Offline evaluation of a model on every frame of a LAMMPS text dump, with its
own neighbor search (vesin, through :func:`localcond.engine.neighbors.periodic_edges`), independent of the LAMMPS fix: ``localcond predict``.

Outputs (λ in S cm² mol⁻¹):
  PREFIX.npz          timestep [F], id [N] (sorted), type [N], evaluated [N] (bool:
                      type mapped to a species), lambda [F, N] (0 where not evaluated),
                      frame_mean [F] (mean over evaluated atoms), metadata (JSON text);
                      for an ensemble model also frame_member_means [F, k] (each
                      member's mean over evaluated atoms: their spread over k of the
                      mean over frames is the fix's model uncertainty, f_ID[10])
  PREFIX_frames.csv   timestep, n_ions, mean λ per frame
Both are written to temporary names and renamed when complete.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.errors import DumpFormatError
from localcond.io.lammps_dump import DumpFrame, read_dump
from localcond.engine.neighbors import periodic_edges
from localcond.engine.runtime import LoadedModel, evaluate_members, load_model
from localcond.engine.species import check_charges, map_types, molecule_charges
from localcond.io.files import output_files


@dataclass
class Prediction:
    timesteps: np.ndarray
    ids: np.ndarray
    types: np.ndarray
    evaluated: np.ndarray
    lam: np.ndarray
    frame_mean: np.ndarray
    frame_member_means: np.ndarray | None = None  # [F, k] for an ensemble model


def predict_frame(
    model: LoadedModel, frame: DumpFrame, indices: Sequence[int], molecules: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(ids, types, evaluated, λ, each ensemble member's mean λ over the evaluated atoms
    or None) of one frame, sorted by atom ID. With ``molecules`` (the
    dump's ``mol`` column), each atom of a mapped type is a molecular ion's centre and
    carries its molecule's total charge (:func:`localcond.engine.species.molecule_charges`)."""
    order = np.argsort(frame.ids, kind="stable")
    ids, types = frame.ids[order], frame.types[order]
    positions = frame.positions()[order]
    where = f"{frame.path}, frame {frame.index} (step {frame.timestep})"
    repeated = ids[1:][ids[1:] == ids[:-1]]
    if repeated.size:
        raise DumpFormatError(f"{where}: atom ID {repeated[0]} appears more than once")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise DumpFormatError(f"{where}: atom {ids[bad][0]} has a non-finite position "
                              f"{positions[bad][0].tolist()}")
    if types.min() < 1 or types.max() > len(indices):
        raise DumpFormatError(
            f"{frame.path}, frame {frame.index}: atom types range over {types.min()}..{types.max()} "
            f"but {len(indices)} species names were given (one per atom type)"
        )
    species_of_type = np.asarray(indices, dtype=np.int64)
    species = species_of_type[types - 1]
    if molecules:
        charges = frame.column("q")[order].copy()
        centre = species >= 0
        charges[centre] = molecule_charges(where, ids, frame.column("mol")[order], charges, centre)
        check_charges(model.metadata, indices, types, charges)
    elif "q" in frame.columns:
        check_charges(model.metadata, indices, types, frame.columns["q"][order])
    evaluated = species >= 0
    edge_index, edge_vec = periodic_edges(
        positions[evaluated], frame.cell, frame.pbc, model.metadata.cutoff
    )
    lam = np.zeros(len(ids))
    lam[evaluated], members = evaluate_members(
        model, species[evaluated], edge_index, edge_vec, int(evaluated.sum())
    )
    return ids, types, evaluated, lam, (members.mean(axis=1) if members is not None else None)


def predict_dump(
    model_path: str | Path, dump_path: str | Path, type_species: Sequence[str | None],
    progress: bool = False, molecules: bool = False,
) -> Prediction:
    model = load_model(model_path)
    indices = map_types(model.metadata, type_species)
    timesteps, lams, member_means, ref = [], [], [], None
    for frame in read_dump(dump_path):
        ids, types, evaluated, lam, members = predict_frame(model, frame, indices, molecules)
        member_means.append(members)
        if ref is None:
            ref = (ids, types, evaluated)
        elif not np.array_equal(ids, ref[0]) or not np.array_equal(types, ref[1]):
            raise DumpFormatError(
                f"{dump_path}, frame {frame.index}: the set of atoms (IDs or types) differs from frame 0"
            )
        timesteps.append(frame.timestep)
        lams.append(lam)
        if progress:
            print(f"\rlocalcond predict: frame {len(lams)} (step {frame.timestep})", end="",
                  file=sys.stderr, flush=True)
    if progress and lams:
        print(file=sys.stderr)
    if ref is None:
        raise DumpFormatError(f"{dump_path}: no frames")
    lam_all = np.array(lams)
    frame_mean = lam_all[:, ref[2]].mean(axis=1)
    ensemble = np.array(member_means) if member_means[0] is not None else None
    return Prediction(np.array(timesteps), ref[0], ref[1], ref[2], lam_all, frame_mean, ensemble)


def write_prediction(
    prediction: Prediction, prefix: str | Path, model_path: str | Path, dump_path: str | Path,
    type_species: Sequence[str | None],
) -> list[Path]:
    prefix = Path(prefix)
    provenance = {
        "model": str(Path(model_path).resolve()),
        "dump": str(Path(dump_path).resolve()),
        "types": [s or "NULL" for s in type_species],
        "localcond_version": __version__,
        "unit": "S cm^2 mol^-1",
    }
    npz = prefix.with_name(prefix.name + ".npz")
    csv = prefix.with_name(prefix.name + "_frames.csv")

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(
                handle, timestep=prediction.timesteps, id=prediction.ids, type=prediction.types,
                evaluated=prediction.evaluated, **{"lambda": prediction.lam},
                frame_mean=prediction.frame_mean, metadata=json.dumps(provenance),
                **({"frame_member_means": prediction.frame_member_means}
                   if prediction.frame_member_means is not None else {}),
            )

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write(f"# localcond predict: {json.dumps(provenance)}\n")
            handle.write("timestep,n_ions,mean_lambda_S_cm2_per_mol\n")
            n_ions = int(prediction.evaluated.sum())
            for step, mean in zip(prediction.timesteps, prediction.frame_mean):
                handle.write(f"{step},{n_ions},{mean:.17g}\n")

    with output_files([npz, csv], f"the predictions '{npz}' and '{csv}'") as (npz_tmp, csv_tmp):
        write_npz(npz_tmp)
        write_csv(csv_tmp)
    return [npz, csv]
