"""Models that follow the localcond TorchScript contract (doc/design.md §3)."""

from localcond.model.contract import CONTRACT_VERSION, ModelMetadata, read_metadata

__all__ = ["CONTRACT_VERSION", "ModelMetadata", "read_metadata"]
