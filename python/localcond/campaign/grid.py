"""The training grid (``training/grid.json``): the model electrolyte, the protocol
of ``localcond generate`` and its systems, read and checked once; per-segment seeds.

Units: concentrations in mol/L, times in ps (fs for the MD timestep), lengths in Å.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from localcond.errors import LocalcondError
from localcond.io.files import read_json
from localcond.campaign.labels.windows import BLOCKS_PER_LAG

COULOMB_BJERRUM_A = 560.6  # e²/(4π ε0 k_B T) in Å at 298 K, divided by ε below


@dataclass(frozen=True)
class SystemSpec:
    name: str
    role: str  # "train" or "heldout"
    conc: float
    eps: float
    replica: int


@dataclass(frozen=True)
class GridSpec:
    name: str
    input_file: Path
    npairs: int
    temperature_k: float
    timestep_fs: float
    dump_every: int
    equilibration_ps: float
    segment_ps: float
    sub_blocks: int  # blocks of origins stored per segment (merged as the lags require)
    max_pilot_segments: int
    min_production_segments: int
    target_statistical_error: dict[str, float]
    target_total_error: dict[str, float]
    max_production_ps: dict[str, float]
    label_radii_a: tuple[float, ...]
    label_max_origins: int
    label_min_stride_ps: float
    reference_window_ps: tuple[float, float]
    kinisi_max_dielectric: float  # kinisi also beside training systems with ε at most this
    systems: tuple[SystemSpec, ...]

    def steps(self, ps: float) -> int:
        return int(round(ps * 1000.0 / self.timestep_fs))

    @property
    def frame_ps(self) -> float:
        return self.dump_every * self.timestep_fs / 1000.0

    def longest_lag_ps(self, merge: int) -> float:
        """The longest supported lag with blocks of ``merge`` stored sub-blocks."""
        return merge * self.segment_ps / self.sub_blocks / BLOCKS_PER_LAG


def system_name(conc: float, eps: float, replica: int) -> str:
    return f"c{conc:.3f}_e{eps:g}_r{replica}"


def seed(grid: str, system: str, segment: int) -> int:
    """LAMMPS seed of one segment: a hash of grid, system and segment, in [1, 2^29].
    The input derives two more seeds from it (+7919, +104729), all below 2^31."""
    digest = hashlib.sha256(f"{grid}/{system}/{segment}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << 29) + 1


def load_grid(path: str | Path) -> GridSpec:
    path = Path(path)
    spec = read_json(path, "grid file")
    try:
        systems = []
        train = spec["train"]
        for replica in range(1, int(train.get("replicas", 1)) + 1):
            for conc in train["concentrations_mol_per_l"]:
                for eps in train["dielectric_constants"]:
                    systems.append(SystemSpec(system_name(conc, eps, replica), "train", float(conc),
                                              float(eps), replica))
        for item in spec.get("heldout", []):
            replica = int(item.get("replica", 1))
            systems.append(SystemSpec(system_name(item["conc"], item["eps"], replica), "heldout",
                                      float(item["conc"]), float(item["eps"]), replica))
        labels = spec.get("labels", {})
        grid = GridSpec(
            name=spec["name"],
            input_file=(path.parent / spec["input"]).resolve(),
            npairs=int(spec["npairs"]),
            temperature_k=float(spec["temperature_k"]),
            timestep_fs=float(spec["timestep_fs"]),
            dump_every=int(spec["dump_every"]),
            equilibration_ps=float(spec["equilibration_ps"]),
            segment_ps=float(spec["segment_ps"]),
            sub_blocks=int(spec.get("sub_blocks", 5)),
            max_pilot_segments=int(spec.get("max_pilot_segments", 4)),
            min_production_segments=int(spec.get("min_production_segments", 2)),
            target_statistical_error={k: float(v) for k, v in spec["target_statistical_error"].items()},
            target_total_error={k: float(v) for k, v in spec.get("target_total_error", {}).items()},
            max_production_ps={k: float(v) for k, v in spec["max_production_ps"].items()},
            label_radii_a=tuple(float(r) for r in labels.get("radii_A", ())),
            label_max_origins=int(labels.get("max_origins", 100)),
            label_min_stride_ps=float(labels.get("min_stride_ps", 20.0)),
            reference_window_ps=tuple(float(t) for t in spec.get("reference_window_ps", (100.0, 400.0))),
            kinisi_max_dielectric=float(spec.get("kinisi_max_dielectric", 0.0)),
            systems=tuple(systems),
        )
    except KeyError as exc:
        raise LocalcondError(f"grid file {path}: missing key {exc}") from None
    names = [s.name for s in grid.systems]
    if len(set(names)) != len(names):
        raise LocalcondError(f"grid {path}: duplicate systems")
    return grid
