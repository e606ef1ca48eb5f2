"""Exceptions for mistakes a user can fix; the CLI and the LAMMPS fix show their
messages without a traceback."""


class LocalcondError(Exception):
    """Base class of localcond's user-facing errors."""


class ModelFileError(LocalcondError):
    """A model file is missing, unreadable, not TorchScript, or lacks valid metadata."""


class ModelInputError(LocalcondError):
    """Inputs handed to a model break the contract (shapes, indices, species)."""


class ModelEvaluationError(LocalcondError):
    """A model raised an exception while it ran."""


class ModelOutputError(LocalcondError):
    """A model returned the wrong shape or non-finite values.

    ``bad_nodes`` holds the node indices with non-finite values, if any.
    """

    def __init__(self, message: str, bad_nodes: "list[int] | None" = None) -> None:
        super().__init__(message)
        self.bad_nodes = bad_nodes or []


class TypeMapError(LocalcondError):
    """A LAMMPS type -> species map does not fit the model."""


class DumpFormatError(LocalcondError):
    """A LAMMPS dump file is malformed or inconsistent."""
