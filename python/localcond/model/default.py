"""The shipped default model: a trained local-conductivity model installed with
the package (``localcond/data/default_model.pt``), with the record of how it was
made and how it scores (``default_model.json``: the training command and
configuration, the training systems, ``localcond evaluate``'s table).

``localcond default-model`` prints the model's path, e.g. for LAMMPS:
``-var model $(localcond default-model)``. ``scripts/train_default_model.sh``
remakes both files from the committed training set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localcond.errors import LocalcondError

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL_FILE = "default_model.pt"
CARD_FILE = "default_model.json"


def model_path() -> Path:
    """The default model's file; a clear error when the installation lacks it."""
    path = DATA / MODEL_FILE
    if not path.is_file():
        raise LocalcondError(f"the default model {path} is missing from this installation; "
                             "reinstall localcond, or remake it with scripts/train_default_model.sh")
    return path


def card() -> dict[str, Any]:
    """How the default model was made and how it scores (see the module docstring)."""
    path = DATA / CARD_FILE
    if not path.is_file():
        raise LocalcondError(f"the default model's record {path} is missing from this installation")
    return json.loads(path.read_text())
