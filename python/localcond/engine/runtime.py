"""Evaluate a localcond model on an edge list.

One implementation used by the LAMMPS fix (through ``fix_bridge``), by
``localcond predict`` and by the ASE calculator. Inputs follow the contract of
:mod:`localcond.model.contract`; the result is λ in S cm² mol⁻¹ (float64).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from localcond.errors import (
    ModelEvaluationError,
    ModelFileError,
    ModelInputError,
    ModelOutputError,
)
from localcond.model.contract import ModelMetadata, read_metadata
from localcond.model.export import torch_dtype


@dataclass
class LoadedModel:
    module: torch.jit.ScriptModule
    metadata: ModelMetadata
    path: Path
    members: int | None = None  # ensemble members (see n_members), found on first use

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.metadata)


def load_model(path: str | Path) -> LoadedModel:
    """Load a model file after validating its metadata (errors: ModelFileError)."""
    path = Path(path)
    metadata = read_metadata(path)
    _verify_archive(path)
    try:
        # from an open file: torch takes a path as UTF-8 text, which a name that is not valid
        # in the file system's encoding (decoded with surrogates) cannot be
        with open(path, "rb") as handle:
            module = torch.jit.load(handle, map_location="cpu")
    except OSError as exc:
        raise ModelFileError(f"cannot read model file '{path}': {exc.strerror or exc}") from None
    except Exception as exc:  # torch raises RuntimeError/ValueError with long C++ traces
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file '{path}' is not a loadable TorchScript model: {first_line}") from None
    module.eval()
    return LoadedModel(module=module, metadata=metadata, path=path)


def _verify_archive(path: Path) -> None:
    """Every member of the model archive against its CRC: torch loads stored (uncompressed)
    weights without checking them, so a flipped byte would give quietly wrong λ."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"model file '{path}' cannot be read as an archive: {exc}") from None
    except zlib.error as exc:  # a flipped byte inside a compressed member
        raise ModelFileError(f"model file '{path}' is corrupted: a compressed archive member cannot be "
                             f"decompressed ({exc}); copy or export the model again") from None
    if bad is not None:
        raise ModelFileError(f"model file '{path}' is corrupted: archive member '{bad}' fails its CRC "
                             "check; copy or export the model again")


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_inputs(
    model: LoadedModel, species: np.ndarray, edge_index: np.ndarray, edge_vec: np.ndarray,
    n_local: int,
) -> None:
    n_nodes = species.shape[0]
    if species.ndim != 1:
        raise ModelInputError(f"species must be 1-D, got shape {species.shape}")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ModelInputError(f"edge_index must have shape (2, n_edges), got {edge_index.shape}")
    if edge_vec.shape != (edge_index.shape[1], 3):
        raise ModelInputError(
            f"edge_vec must have shape ({edge_index.shape[1]}, 3), got {edge_vec.shape}"
        )
    if not 0 <= n_local <= n_nodes:
        raise ModelInputError(f"n_local={n_local} must be between 0 and n_nodes={n_nodes}")
    if n_nodes and (species.min() < 0 or species.max() >= len(model.metadata.species)):
        raise ModelInputError(
            f"species indices must be in [0, {len(model.metadata.species)}), "
            f"got [{species.min()}, {species.max()}]"
        )
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n_nodes):
        raise ModelInputError(f"edge_index must be in [0, {n_nodes}) (n_nodes)")


def n_members(model: LoadedModel) -> int:
    """How many ensemble members the model exposes through its ``members`` method
    ([k, n_local], whose mean is ``forward``): k from a call on no nodes, cached; 0 for a
    model without the method (or one that fails on no nodes)."""
    if model.members is None:
        k = 0
        if hasattr(model.module, "members"):
            empty = (torch.zeros(0, dtype=torch.int64), torch.zeros((2, 0), dtype=torch.int64),
                     torch.zeros((0, 3), dtype=model.dtype), 0)
            try:
                with torch.inference_mode():
                    probe = model.module.members(*empty)
                k = int(probe.shape[0]) if isinstance(probe, torch.Tensor) and probe.dim() == 2 else 0
            except Exception:  # noqa: BLE001 - such a model is used through forward alone
                k = 0
        model.members = k
    return model.members


def evaluate_descriptors(
    model: LoadedModel, species: np.ndarray, edge_index: np.ndarray, edge_vec: np.ndarray,
    n_local: int,
) -> np.ndarray | None:
    """The model's descriptors [n_local, F] (float64) from its ``descriptors`` method, or
    None for a model without one (localcond.engine.domain's structure check)."""
    if not hasattr(model.module, "descriptors"):
        return None
    try:
        with torch.inference_mode():
            out = model.module.descriptors(torch.as_tensor(np.asarray(species, dtype=np.int64)),
                                           torch.as_tensor(np.asarray(edge_index, dtype=np.int64)),
                                           torch.as_tensor(np.asarray(edge_vec)).to(model.dtype), int(n_local))
    except Exception as exc:  # TorchScript wraps errors in long multi-line traces
        raise ModelEvaluationError(f"the model's descriptors raised an error: {_last_line(exc)}") from exc
    return out.detach().to(torch.float64).numpy()


def evaluate(
    model: LoadedModel, species: np.ndarray, edge_index: np.ndarray, edge_vec: np.ndarray,
    n_local: int,
) -> np.ndarray:
    """λ (S cm² mol⁻¹) for nodes 0 … n_local−1 as a float64 array.

    ``species`` int64 [n_nodes] (indices into ``model.metadata.species``),
    ``edge_index`` int64 [2, n_edges] (center, neighbor), ``edge_vec`` [n_edges, 3]
    = r_neighbor − r_center in Å. Raises ModelInputError for malformed inputs and
    ModelOutputError for a wrong output shape or non-finite values.
    """
    return evaluate_members(model, species, edge_index, edge_vec, n_local)[0]


def evaluate_members(
    model: LoadedModel, species: np.ndarray, edge_index: np.ndarray, edge_vec: np.ndarray,
    n_local: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """λ as :func:`evaluate` gives it and, for an ensemble (:func:`n_members` > 1), every
    member's λ [k, n_local] (float64); None for a single model. λ is the members' mean
    taken in the model's own precision, exactly what ``forward`` returns."""
    species = np.asarray(species, dtype=np.int64)
    edge_index = np.asarray(edge_index, dtype=np.int64)
    edge_vec = np.asarray(edge_vec)
    _check_inputs(model, species, edge_index, edge_vec, n_local)
    inputs = (torch.from_numpy(species), torch.from_numpy(edge_index),
              torch.from_numpy(edge_vec).to(model.dtype), int(n_local))
    k = n_members(model)
    members = None
    try:
        with torch.inference_mode():
            if k > 1:
                members = model.module.members(*inputs)
                out = members.mean(dim=0) if isinstance(members, torch.Tensor) else members
            else:
                out = model.module(*inputs)
    except Exception as exc:  # TorchScript wraps errors in long multi-line traces
        raise ModelEvaluationError(f"the model raised an error: {_last_line(exc)}") from exc
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"model returned {type(out).__name__}, expected a tensor")
    if tuple(out.shape) != (n_local,):
        raise ModelOutputError(
            f"model returned shape {tuple(out.shape)}, expected ({n_local},) (one value per output node)"
        )
    values = out.detach().to(torch.float64).numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ModelOutputError(
            f"model returned {bad.size} non-finite value(s) (NaN/Inf)", bad_nodes=bad.tolist()
        )
    if members is None:
        return values, None
    if tuple(members.shape) != (k, n_local):
        raise ModelOutputError(f"the model's members returned shape {tuple(members.shape)}, expected ({k}, {n_local})")
    return values, members.detach().to(torch.float64).numpy()
