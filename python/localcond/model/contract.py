"""The localcond model contract (doc/design.md §3) and its metadata.

A model file is a TorchScript archive whose ``forward`` is

    forward(species: int64[n_nodes], edge_index: int64[2, n_edges],
            edge_vec: float[n_edges, 3], n_local: int) -> float[n_local]

with ``edge_index[0]`` the center i, ``edge_index[1]`` the neighbor j and
``edge_vec = r_j - r_i`` in Å (periodic image or ghost copy of j). The output
is λ, the local molar conductivity, in S cm² mol⁻¹, for nodes 0 … n_local−1.

The metadata travel inside the archive as the extra file ``localcond.json``
and can be read with :func:`read_metadata` without torch and without running
the model. Only :mod:`json` and :mod:`zipfile` are imported here.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcond.errors import ModelFileError

CONTRACT_VERSION = 1
METADATA_FILE = "localcond.json"
DTYPES = ("float32", "float64")
PURPOSES = ("conductivity", "test")
UNITS = {"length": "angstrom", "charge": "e", "output": "S cm^2 mol^-1"}


@dataclass(frozen=True)
class ModelMetadata:
    """What a caller can check before evaluating a model.

    ``charges`` are in units of e, ``cutoff`` in Å: the output nodes' edges. Every other
    node's edges are read only within ``inner_cutoff`` (Å; None: the same ``cutoff``),
    so the receptive field is ``cutoff + (n_layers - 1) * inner_cutoff``: an output
    depends on atoms up to that distance. A message-passing model leaves
    ``inner_cutoff`` None (``n_layers * cutoff``); the two-scale model reads its
    neighbours' own spectra within R = ``cutoff`` and those within rc =
    ``inner_cutoff`` (R + rc).
    ``temperature_k`` and ``label_tau_ps`` describe the labels a trained model
    learned from (None for models that were not trained on labels); ``training``
    holds the rest of a trained model's provenance (mode, label form and
    window, systems, metrics, ensemble spread, the command that made it).
    ``purpose`` is "test" for analytic test functions (the reference model),
    which callers must not present as conductivities. ``validation`` says which of
    the model's outputs were checked against data of the same kind on held-out
    systems (``{"species_share": {"validated": true, "how": "...", ...}}``): only a
    model whose species split was checked against measured shares of Λ_EH reports
    that split as physics (the fix's f_ID[9], the summaries' share of Λ_pred).
    """

    species: tuple[str, ...]
    charges: tuple[float, ...]
    cutoff: float
    n_layers: int
    dtype: str
    kind: str
    description: str
    trained: bool = False
    temperature_k: float | None = None
    label_tau_ps: float | None = None
    training_systems: tuple[str, ...] = ()
    training: dict = field(default_factory=dict)  # provenance of a trained model (JSON-able)
    purpose: str = "conductivity"  # "test": an analytic test function, not a conductivity model
    validation: dict = field(default_factory=dict)  # outputs checked on held-out systems (JSON-able)
    inner_cutoff: float | None = None  # Å: the edges read of nodes other than the outputs (None: cutoff)
    contract_version: int = CONTRACT_VERSION
    units: dict[str, str] = field(default_factory=lambda: dict(UNITS))

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ModelFileError("invalid model metadata: " + "; ".join(problems))

    @property
    def edge_cutoff_inner(self) -> float:
        """The cutoff of the edges of nodes other than the outputs, Å."""
        return self.cutoff if self.inner_cutoff is None else self.inner_cutoff

    @property
    def receptive_field(self) -> float:
        return self.cutoff + (self.n_layers - 1) * self.edge_cutoff_inner

    def reach(self) -> str:
        """The cutoffs, layers and receptive field in words (the fix's log, ``localcond info``)."""
        inner = f" (other nodes' edges {self.inner_cutoff:g} A)" if self.inner_cutoff else ""
        return f"cutoff {self.cutoff:g} A{inner}, {self.n_layers} layer(s), receptive field {self.receptive_field:g} A"

    def problems(self) -> list[str]:
        out = []
        if self.contract_version != CONTRACT_VERSION:
            out.append(
                f"contract version {self.contract_version} is not supported "
                f"(this localcond reads version {CONTRACT_VERSION})"
            )
        if not self.species:
            out.append("no species")
        if len(set(self.species)) != len(self.species):
            out.append(f"duplicate species names {list(self.species)}")
        if any(not s or s.upper() == "NULL" or any(c.isspace() for c in s) for s in self.species):
            out.append(f"species names must be non-empty words other than NULL: {list(self.species)}")
        if len(self.charges) != len(self.species):
            out.append(f"{len(self.charges)} charges for {len(self.species)} species")
        if not all(math.isfinite(q) for q in self.charges):
            out.append("charges must be finite")
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            out.append(f"cutoff must be a positive length in Å, got {self.cutoff}")
        if self.n_layers < 1:
            out.append(f"n_layers must be >= 1, got {self.n_layers}")
        if self.inner_cutoff is not None and not (math.isfinite(self.inner_cutoff)
                                                  and 0 < self.inner_cutoff <= self.cutoff):
            out.append(f"inner_cutoff must be a length in Å in (0, cutoff = {self.cutoff}], got {self.inner_cutoff}")
        if self.dtype not in DTYPES:
            out.append(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.purpose not in PURPOSES:
            out.append(f"purpose must be one of {PURPOSES}, got {self.purpose!r}")
        if self.units != UNITS:
            out.append(f"units must be {UNITS}, got {self.units}")
        if not isinstance(self.validation, dict):
            out.append(f"validation must be a JSON object, got {self.validation!r}")
        return out

    def fingerprint(self) -> str:
        """A short hash of the metadata: files written with the same model carry the same one."""
        import hashlib

        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def species_share_validated(self) -> bool:
        """Whether the split of λ between species was checked against measured shares."""
        share = self.validation.get("species_share")
        return isinstance(share, dict) and share.get("validated") is True

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("validation", "inner_cutoff"):  # models from before these fields keep their fingerprint
            if not data[key]:
                del data[key]
        data["receptive_field"] = self.receptive_field
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelFileError(f"{source}: metadata must be a JSON object")
        data.pop("receptive_field", None)
        required = ("species", "charges", "cutoff", "n_layers", "dtype", "kind", "description")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelFileError(f"{source}: metadata lacks {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"{source}: unknown metadata fields {unknown}")
        try:
            return cls(
                species=tuple(str(s) for s in data.pop("species")),
                charges=tuple(float(q) for q in data.pop("charges")),
                cutoff=float(data.pop("cutoff")),
                n_layers=int(data.pop("n_layers")),
                training_systems=tuple(data.pop("training_systems", ())),
                **data,
            )
        except ModelFileError as exc:
            raise ModelFileError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: malformed metadata ({exc})") from None


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read a model file's metadata without loading torch or the model."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' is not a regular file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/extra/" + METADATA_FILE)]
            if not names:
                raise ModelFileError(
                    f"model file '{path}' has no localcond metadata (extra/{METADATA_FILE}); "
                    "export models with localcond.model.export.save_model"
                )
            text = archive.read(names[0]).decode("utf-8")
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            raise ModelFileError(f"model file '{path}' is corrupted: {exc}") from None
        raise ModelFileError(
            f"model file '{path}' is not a TorchScript model (not a zip archive)"
        ) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file '{path}': {exc.strerror or exc}") from None
    except (zlib.error, EOFError, UnicodeDecodeError) as exc:  # a damaged compressed member
        raise ModelFileError(f"model file '{path}' is corrupted: its metadata cannot be read ({exc}); "
                             "copy or export the model again") from None
    return ModelMetadata.from_json(text, source=f"model file '{path}'")
