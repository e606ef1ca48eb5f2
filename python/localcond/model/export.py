"""Export a model to a TorchScript file that meets the contract.

Like metatomic's export, the checks happen here, once, so engines can trust
what they load: the module is scripted, put in eval mode, and run on a small
graph (with more nodes than outputs) before it is written.
"""

from __future__ import annotations

from pathlib import Path

import torch

from localcond.errors import ModelFileError
from localcond.model.contract import METADATA_FILE, ModelMetadata
from localcond.io.files import atomic_path

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(metadata: ModelMetadata) -> torch.dtype:
    return _TORCH_DTYPES[metadata.dtype]


def _check_on_small_graph(module: torch.jit.ScriptModule, metadata: ModelMetadata) -> None:
    generator = torch.Generator().manual_seed(0)
    n_nodes, n_local = 6, 4
    species = torch.randint(0, len(metadata.species), (n_nodes,), generator=generator)
    pairs = [(i, j) for i in range(n_nodes) for j in range(n_nodes) if i != j]
    edge_index = torch.tensor(pairs, dtype=torch.int64).T.contiguous()
    edge_vec = (torch.rand(len(pairs), 3, generator=generator) - 0.5) * metadata.cutoff
    edge_vec = edge_vec.to(torch_dtype(metadata))
    with torch.inference_mode():
        out = module(species, edge_index, edge_vec, n_local)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n_local,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelFileError(f"model returned {shape} for n_local={n_local}, expected ({n_local},)")
    if not torch.isfinite(out).all():
        raise ModelFileError("model returned non-finite values on the export check graph")
    with torch.inference_mode():
        empty = module(
            species, torch.zeros(2, 0, dtype=torch.int64),
            torch.zeros(0, 3, dtype=torch_dtype(metadata)), n_local,
        )
    if tuple(empty.shape) != (n_local,):
        raise ModelFileError("model fails on a graph without edges")


def save_model(module: torch.nn.Module, metadata: ModelMetadata, path: str | Path) -> Path:
    """Script ``module``, check it against the contract, and write it with its
    metadata to ``path`` (written to a temporary file, then renamed)."""
    path = Path(path)
    module = module.to(torch_dtype(metadata)).eval()
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    _check_on_small_graph(scripted, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: metadata.to_json()})
    return path
