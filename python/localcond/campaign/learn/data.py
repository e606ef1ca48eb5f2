"""Training data for the learned local conductivity, read from training records
(:mod:`localcond.campaign.dataset`): one :class:`SystemData` per record, one
:class:`Frame` per label origin with its edge list built once.

Units: positions and edge vectors in Å, labels and Λ in S cm² mol⁻¹.
Species are mapped to the model's species list by name; a record whose
species the model does not know is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from localcond.campaign.dataset import positions, read_record
from localcond.errors import LocalcondError
from localcond.engine.neighbors import periodic_edges


@dataclass
class Frame:
    """One label origin: the model's inputs and the per-ion labels."""

    species: torch.Tensor  # int64 [n]
    edge_index: torch.Tensor  # int64 [2, e]
    edge_vec: torch.Tensor  # [e, 3] Å
    labels: dict[str, torch.Tensor]  # name -> [n], S cm² mol⁻¹
    segment: int
    cache: dict[str, torch.Tensor] = field(default_factory=dict)  # precomputed model inputs


@dataclass
class SystemData:
    name: str
    role: str
    lam: float  # Λ of the system (S cm² mol⁻¹)
    lam_error: float  # its total error (statistical ⊕ τ-systematic)
    frames: list[Frame]
    metadata: dict

    @property
    def n_ions(self) -> int:
        return int(self.frames[0].species.shape[0])


def load_system(path: str | Path, species: Sequence[str], cutoff: float,
                dtype: torch.dtype = torch.float32, label_keys: Sequence[str] = ("exact",)) -> SystemData:
    """Read one record and build each frame's edges within ``cutoff`` (Å)."""
    record = read_record(path)
    meta = record["metadata"]
    names = [str(s) for s in record["species"]]
    unknown = [n for n in names if n not in species]
    if unknown:
        raise LocalcondError(f"{path}: species {unknown} are not among the model's {list(species)}")
    to_model = np.array([list(species).index(n) for n in names])
    node_species = torch.as_tensor(to_model[record["species_index"]], dtype=torch.int64)
    pbc = tuple(bool(b) for b in record["pbc"])
    keys = {}
    for key in label_keys:
        array_name = "label_exact" if key == "exact" else f"label_{key}"
        if array_name not in record:
            raise LocalcondError(f"{path}: no labels '{key}' (has: "
                                 f"{sorted(k[6:] for k in record if k.startswith('label_'))})")
        keys[key] = array_name
    frames = []
    for k in range(len(record["collective"])):
        edge_index, edge_vec = periodic_edges(positions(record, k), record["cell"], pbc, cutoff)
        frames.append(Frame(
            species=node_species,
            edge_index=torch.as_tensor(edge_index),
            edge_vec=torch.as_tensor(edge_vec, dtype=dtype),
            labels={key: torch.as_tensor(record[name][k], dtype=dtype) for key, name in keys.items()},
            segment=int(record["segment"][k]),
        ))
    lam = meta["molar_conductivity"]
    error = lam.get("total_error") or lam.get("stderr")
    if error is None or not np.isfinite(error) or error <= 0:
        raise LocalcondError(f"{path}: the record has no usable error of Lambda")
    return SystemData(meta.get("system", Path(path).stem), meta.get("role", "train"), float(lam["value"]),
                      float(error), frames, meta)


@dataclass
class Batch:
    """Frames joined into one graph (node and edge offsets), with which system and
    frame each node belongs to."""

    species: torch.Tensor
    edge_index: torch.Tensor
    edge_vec: torch.Tensor
    labels: dict[str, torch.Tensor]
    node_frame: torch.Tensor  # int64 [n]: index of the frame in the batch
    frame_system: list[int]  # system index per frame
    cache: dict[str, torch.Tensor]  # what every frame of the batch has precomputed, joined

    @property
    def n_nodes(self) -> int:
        return int(self.species.shape[0])


def collate(frames: Sequence[Frame], systems: Sequence[int]) -> Batch:
    offsets = np.cumsum([0] + [int(f.species.shape[0]) for f in frames])
    return Batch(
        species=torch.cat([f.species for f in frames]),
        edge_index=torch.cat([f.edge_index + int(o) for f, o in zip(frames, offsets)], dim=1),
        edge_vec=torch.cat([f.edge_vec for f in frames]),
        labels={k: torch.cat([f.labels[k] for f in frames]) for k in frames[0].labels},
        node_frame=torch.cat([torch.full((int(f.species.shape[0]),), k, dtype=torch.int64)
                              for k, f in enumerate(frames)]),
        frame_system=list(systems),
        cache={k: torch.cat([f.cache[k] for f in frames]) for k in frames[0].cache
               if all(k in f.cache for f in frames)},
    )
