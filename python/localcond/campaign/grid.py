"""The training grid (``training/grid.json``): the model electrolyte, the protocol
of ``localcond generate`` and its systems, read and checked once; per-segment seeds.

Besides the (c, ε) product of ``train`` and the ``heldout`` list, a grid may list
``variants``: systems of the same model electrolyte with other ions, each with a
role and any of ``sigma_cation`` (Å, default 3.0), ``sigma_cation2`` and
``fraction2`` (a second cation type of that size making up that fraction of the
cations; the model sees both as one species), and ``mass_scale`` (every mass times
this: other dynamics, the same equilibrium structure). They reach the LAMMPS input
as its variables ``sigp``, ``sigq``, ``xmix`` and ``mscale``
(lammps_inputs/electrolyte/in.electrolyte) and the system's name as suffixes
(``_s2.5``, ``_s2.5x4.5f0.5``, ``_m4``).

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
    ions: tuple[tuple[str, float], ...] = ()  # a variant's LAMMPS variables (module docstring)

    @property
    def lammps_variables(self) -> dict[str, str]:
        return {name: repr(value) for name, value in self.ions}


VARIANT_KEYS = {"sigma_cation": "sigp", "sigma_cation2": "sigq", "fraction2": "xmix", "mass_scale": "mscale"}


def variant_suffix(ions: dict[str, float]) -> str:
    """The name's suffix of a variant (module docstring); empty for the plain electrolyte."""
    out = ""
    if "sigp" in ions or "sigq" in ions:
        out += f"_s{ions.get('sigp', 3.0):g}"
        if "sigq" in ions:
            out += f"x{ions['sigq']:g}f{ions['xmix']:g}"
    if "mscale" in ions:
        out += f"_m{ions['mscale']:g}"
    return out


def ions_description(spec: SystemSpec) -> dict[str, float]:
    """A grid system's ions in words: ``sigma_cation`` (Å), ``sigma_cation2`` and
    ``fraction2`` (a second cation size and its share of the cations), ``mass_scale``,
    with the defaults of the plain electrolyte, and ``sigma_cation_mean`` = the cations'
    mean size."""
    ions = dict(spec.ions)
    sigma, sigma2, x = ions.get("sigp", 3.0), ions.get("sigq", 0.0), ions.get("xmix", 0.0)
    return {"sigma_cation": sigma, "sigma_cation2": sigma2, "fraction2": x,
            "mass_scale": ions.get("mscale", 1.0), "sigma_cation_mean": (1.0 - x) * sigma + x * sigma2}


def _variant(item: dict, where: Path) -> SystemSpec:
    unknown = sorted(set(item) - set(VARIANT_KEYS) - {"conc", "eps", "role", "replica", "why"})
    if unknown:
        raise LocalcondError(f"grid file {where}: variant {item} has unknown keys {unknown}")
    ions = {VARIANT_KEYS[k]: float(item[k]) for k in VARIANT_KEYS if k in item}
    if ("sigq" in ions) != ("xmix" in ions) or not 0.0 <= ions.get("xmix", 0.5) < 1.0:
        raise LocalcondError(f"grid file {where}: variant {item}: a second cation needs sigma_cation2 and a "
                             "fraction2 in [0, 1)")
    if any(v <= 0 for k, v in ions.items() if k != "xmix"):
        raise LocalcondError(f"grid file {where}: variant {item}: sizes and mass scales must be positive")
    if item.get("role") not in ("train", "heldout"):
        raise LocalcondError(f"grid file {where}: variant {item}: role must be 'train' or 'heldout'")
    replica = int(item.get("replica", 1))
    name = f"c{float(item['conc']):.3f}_e{float(item['eps']):g}{variant_suffix(ions)}_r{replica}"
    return SystemSpec(name, item["role"], float(item["conc"]), float(item["eps"]), replica,
                      tuple(sorted(ions.items())))


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
    path: Path = Path("grid.json")  # the grid file

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
        train = spec.get("train", {"concentrations_mol_per_l": [], "dielectric_constants": []})
        for replica in range(1, int(train.get("replicas", 1)) + 1):
            for conc in train["concentrations_mol_per_l"]:
                for eps in train["dielectric_constants"]:
                    systems.append(SystemSpec(system_name(conc, eps, replica), "train", float(conc),
                                              float(eps), replica))
        for item in spec.get("heldout", []):
            replica = int(item.get("replica", 1))
            systems.append(SystemSpec(system_name(item["conc"], item["eps"], replica), "heldout",
                                      float(item["conc"]), float(item["eps"]), replica))
        systems.extend(_variant(item, path) for item in spec.get("variants", []))
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
            path=path,
        )
    except KeyError as exc:
        raise LocalcondError(f"grid file {path}: missing key {exc}") from None
    names = [s.name for s in grid.systems]
    if len(set(names)) != len(names):
        raise LocalcondError(f"grid {path}: duplicate systems")
    return grid
