"""Drop one truncation radius's per-ion labels from committed training records, to keep the
committed training set (training/data/) within its 30 MB budget.

The 15 Å truncated labels (``label_truncated_R15``, a fifth of a record) were read only by
the November pilot ``training/configs/pilot-labels-R15.json`` and by
``training/truncation_study.py``, whose committed results (training/configs/README.md,
training/truncation_study.json) stand as measured; the exact labels, the 25 Å ones
(``combined`` mode) and everything `system` mode reads (positions, Λ) are kept unchanged.
Each record's metadata lose the radius and say what was dropped; the manifest's checksums
follow. Run once (2026-12-07):

    PYTHONPATH=python .venv/bin/python training/drop_label_radius.py 15 \
        training/data/implicit-v2 training/data/implicit-v3-sizes
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from localcond.campaign.dataset import read_record, update_manifest
from localcond.io.files import atomic_path


def drop(path: Path, radius: float) -> bool:
    """Rewrite ``path`` without the labels truncated at ``radius`` (Å); False if it has none."""
    key = f"label_truncated_R{radius:g}"
    record = read_record(path)
    if key not in record:
        return False
    meta = record.pop("metadata")
    record.pop(key)
    meta["labels"] = {k: v for k, v in meta["labels"].items() if v != key}
    meta["label_radii_A"] = [r for r in meta["label_radii_A"] if r != radius]
    meta["dropped"] = meta.get("dropped", []) + [f"{key}: training/drop_label_radius.py (data budget)"]
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, metadata=json.dumps(meta), **record)
    return True


def main() -> None:
    radius = float(sys.argv[1])
    for directory in map(Path, sys.argv[2:]):
        manifest = json.loads((directory / "manifest.json").read_text())
        for name, entry in manifest["records"].items():
            if drop(directory / name, radius):
                update_manifest(directory, directory / name, {k: v for k, v in entry.items()
                                                              if k not in ("sha256", "bytes")})
                print(f"{directory / name}: dropped R = {radius:g} A")


if __name__ == "__main__":
    main()
