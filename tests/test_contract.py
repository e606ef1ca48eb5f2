"""Model files: metadata read without torch, validation of bad files, export checks."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from localcond.errors import (
    ModelEvaluationError,
    ModelFileError,
    ModelInputError,
    ModelOutputError,
)
from localcond.model.contract import METADATA_FILE, ModelMetadata, read_metadata
from localcond.model.export import save_model
from localcond.model.message_passing import make_untrained_model
from localcond.model.reference import make_reference_model
from localcond.engine.runtime import evaluate, load_model


@pytest.fixture
def reference(tmp_path):
    module, metadata = make_reference_model(["Li", "PF6"], [1.0, -1.0], 5.0)
    return save_model(module, metadata, tmp_path / "ref.pt"), metadata


def test_metadata_round_trip_and_read_without_torch(reference):
    path, metadata = reference
    assert read_metadata(path) == metadata
    code = (
        "import sys; from localcond.model.contract import read_metadata; "
        f"m = read_metadata({str(path)!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(m.receptive_field)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 5.0


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(charges=(1.0,)), "1 charges for 2 species"),
        (dict(cutoff=-1.0), "cutoff must be a positive length"),
        (dict(n_layers=0), "n_layers must be >= 1"),
        (dict(inner_cutoff=1e3), r"inner_cutoff must be a length in Å in \(0, cutoff"),
        (dict(inner_cutoff=0.0), r"inner_cutoff must be a length in Å in \(0, cutoff"),
        (dict(dtype="float16"), "dtype must be one of"),
        (dict(species=("Li", "Li")), "duplicate species"),
        (dict(species=("Li", "NULL")), "other than NULL"),
        (dict(contract_version=99), "contract version 99 is not supported"),
    ],
)
def test_invalid_metadata_is_refused(reference, change, message):
    fields = dict(json.loads(reference[1].to_json()))
    fields.pop("receptive_field")
    fields.update(change)
    with pytest.raises(ModelFileError, match=message):
        ModelMetadata.from_json(json.dumps(fields))


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_metadata(tmp_path / "missing.pt")
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_metadata(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00 not a model")
    with pytest.raises(ModelFileError, match="not a TorchScript model"):
        read_metadata(junk)
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    with pytest.raises(ModelFileError, match="has no localcond metadata"):
        read_metadata(plain)


def test_zip_with_metadata_but_no_model_is_refused(tmp_path, reference):
    fake = tmp_path / "fake.pt"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("fake/extra/" + METADATA_FILE, reference[1].to_json())
    with pytest.raises(ModelFileError, match="not a loadable TorchScript model"):
        load_model(fake)


class WrongShape(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return torch.zeros(n_local + 1, dtype=edge_vec.dtype)


def test_export_checks_output_shape(tmp_path, reference):
    with pytest.raises(ModelFileError, match="expected \\(4,\\)"):
        save_model(WrongShape(), reference[1], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    assert not list(tmp_path.glob("bad.pt*"))  # no temporary left behind


def test_runtime_checks_inputs_and_outputs(tmp_path, reference):
    model = load_model(reference[0])
    species = np.array([0, 1, 1])
    edge_index = np.array([[0, 1], [1, 0]])
    edge_vec = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    with pytest.raises(ModelInputError, match="species indices"):
        evaluate(model, np.array([0, 5, 1]), edge_index, edge_vec, 3)
    with pytest.raises(ModelInputError, match="edge_index must be in"):
        evaluate(model, species, np.array([[0, 7], [1, 0]]), edge_vec, 3)
    with pytest.raises(ModelInputError, match="edge_vec must have shape"):
        evaluate(model, species, edge_index, edge_vec[:1], 3)
    with pytest.raises(ModelInputError, match="n_local=4"):
        evaluate(model, species, edge_index, edge_vec, 4)

    wrong = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(WrongShape()), str(wrong),
                   _extra_files={METADATA_FILE: reference[1].to_json()})
    with pytest.raises(ModelOutputError, match="expected \\(3,\\)"):
        evaluate(load_model(wrong), species, edge_index, edge_vec, 3)


class Raises(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        if n_local > 0:
            raise RuntimeError("deliberate failure inside the model")
        return torch.zeros(n_local, dtype=edge_vec.dtype)


def test_model_exception_becomes_one_line(tmp_path, reference):
    path = tmp_path / "raises.pt"
    torch.jit.save(torch.jit.script(Raises()), str(path),
                   _extra_files={METADATA_FILE: reference[1].to_json()})
    with pytest.raises(ModelEvaluationError, match="deliberate failure inside the model") as info:
        evaluate(load_model(path), np.array([0]), np.zeros((2, 0), int), np.zeros((0, 3)), 1)
    assert "\n" not in str(info.value)


def test_message_passing_model_exports_and_is_local(tmp_path):
    """Moving an atom beyond the receptive field of node 0 leaves λ_0 unchanged;
    moving it inside changes it (the metadata's receptive field is honest)."""
    module, metadata = make_untrained_model(["A", "B"], [1.0, -1.0], cutoff=3.0, n_layers=2,
                                            n_features=8, dtype="float64")
    model = load_model(save_model(module, metadata, tmp_path / "mp.pt"))
    assert model.metadata.receptive_field == 6.0
    # a chain along x: 0 at 0, 1 at 2.5, 2 at 5.0, then a probe atom; edges < 3 Å.
    # The probe at 5.4 is two hops from node 0 (via node 1), at 7.5 or 7.9 three hops.
    def lam0(probe_x):
        positions = np.array([[0.0, 0, 0], [2.5, 0, 0], [5.0, 0, 0], [probe_x, 0, 0]])
        pairs = [(i, j) for i in range(4) for j in range(4)
                 if i != j and abs(positions[i, 0] - positions[j, 0]) < 3.0]
        edge_index = np.array(pairs).T
        edge_vec = positions[edge_index[1]] - positions[edge_index[0]]
        return evaluate(model, np.array([0, 1, 0, 1]), edge_index, edge_vec, 1)[0]
    far1, far2, near = lam0(7.5), lam0(7.9), lam0(5.4)
    assert far1 == far2
    assert near != far1


def test_corrupted_weights_are_refused(tmp_path):
    """A byte flipped inside the stored weights: the CRC check catches what torch would
    load silently; a flipped byte in the metadata is called corruption too."""
    module, metadata = make_untrained_model(["Li", "PF6"], [1.0, -1.0], cutoff=5.0, n_layers=1)
    path = save_model(module, metadata, tmp_path / "mp.pt")
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if i.compress_type == zipfile.ZIP_STORED
                      and not i.filename.endswith(METADATA_FILE)), key=lambda i: i.file_size)
    assert "/data/" in member.filename  # a weight tensor
    data = bytearray(path.read_bytes())
    with open(path, "rb") as handle:
        handle.seek(member.header_offset + 26)
        name_len, extra_len = (int.from_bytes(handle.read(2), "little") for _ in range(2))
    start = member.header_offset + 30 + name_len + extra_len
    data[start] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"archive member '{member.filename}' fails its CRC"):
        load_model(bad)


def test_a_damaged_compressed_member_names_the_file(tmp_path):
    """A model re-zipped with compression (zip -9, an archiver) and then damaged: the
    flipped byte inside a deflated member raised zlib.error (a traceback, and the fix's
    message did not name the file). Now every flip gives ModelFileError with the path."""
    module, metadata = make_untrained_model(["Li", "PF6"], [1.0, -1.0], cutoff=5.0, n_layers=1)
    path = save_model(module, metadata, tmp_path / "mp.pt")
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    with zipfile.ZipFile(packed) as archive:
        members = [i for i in archive.infolist() if i.compress_type == zipfile.ZIP_DEFLATED and i.compress_size > 64]
    data = packed.read_bytes()
    raised = set()
    for member in members[:6]:
        name_len = int.from_bytes(data[member.header_offset + 26:member.header_offset + 28], "little")
        extra_len = int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
        start = member.header_offset + 30 + name_len + extra_len
        for offset in (2, member.compress_size // 2):
            damaged = bytearray(data)
            damaged[start + offset] ^= 0x5A
            bad = tmp_path / "bad.pt"
            bad.write_bytes(bytes(damaged))
            with pytest.raises(ModelFileError, match="bad.pt") as caught:
                load_model(bad)
            raised.add("decompressed" in str(caught.value))
    assert True in raised  # some flips broke the deflate stream itself (the zlib.error case)
