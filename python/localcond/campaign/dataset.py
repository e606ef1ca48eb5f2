"""Compact training records: ion frames at label origins with per-ion labels.

A record (``.npz``, format ``localcond-training-record/1``) is what training
reads; it is small enough to commit, so a new machine needs no trajectories.
Per system it holds:

- ``species`` names, ``charge`` per ion (e), ``species_index`` per ion (sorted
  by atom ID), ``cell`` (rows a, b, c, Å) and ``box_origin`` (Å);
- ``positions_u16`` [n_origins, n_ions, 3]: the ions' fractional coordinates
  at each label origin, wrapped into the cell and stored as round(s · 65536)
  mod 65536 (resolution L / 65536, 0.002 Å for a 127 Å box, far below any
  structural length); :func:`positions` turns them back into Å;
- ``time_ps`` of each origin (from the start of its segment's production) and
  ``segment`` (which production segment it came from);
- labels in S cm² mol⁻¹, float32, slope form over the window [τ1, τ2]
  (doc/design.md §1):  λ_i = N P [q_i Δr_i·ΔM (τ2) − q_i Δr_i·ΔM (τ1)] / (τ2 − τ1),
  ``label_exact``; and ``label_truncated_R{R}`` with ΔM replaced by the sum
  over ions within R of ion i at the origin (ion i included, minimum image);
- ``collective`` (float64, e² Å²): |ΔM(τ2)|² − |ΔM(τ1)|² per origin, from
  which :func:`check_record` recomputes Λ over the stored origins
  independently of the per-ion labels;
- ``metadata`` (JSON): window, stride, radii, temperature, n_salt,
  the system's Λ with its error budget, provenance.

Labels are averaged exactly to the slope-form Λ over the same origins:
Σ_i q_i Δr_i·ΔM = |ΔM|².
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localcond import __version__
from localcond.errors import LocalcondError
from localcond.io.files import atomic_path, write_json
from localcond.io.lammps_dump import read_dump
from localcond.campaign.labels.einstein_helfand import BlockSums, DisplacementAccumulator
from localcond.campaign.labels.per_ion import _truncated_dm
from localcond.campaign.labels.trajectory import IonSet, count_frames, ion_frames
from localcond.units import molar_conductivity_prefactor

FORMAT = "localcond-training-record/1"
DENSE_FORMAT = "localcond-dense-labels/1"  # dense per-ion labels of a replica (localcond.campaign.replicas)
UNIT = "S cm^2 mol^-1"
QUANT = 65536


@dataclass
class Segment:
    """One trajectory held in memory: ions, unwrapped positions [F, N, 3] (Å)."""

    path: Path
    ions: IonSet
    box_origin: np.ndarray
    frame_ps: float
    positions: np.ndarray
    timesteps: np.ndarray


def load_segment(path: str | Path, timestep_fs: float, ion_types: tuple[int, ...] | None = None,
                 molecules: bool = False) -> Segment:
    """One dump's ions (:func:`localcond.campaign.labels.trajectory.ion_frames`: the charged
    atoms, or those of ``ion_types``, or molecular ions centred on them)."""
    path = Path(path)
    n = count_frames(path)
    if n < 3:
        raise LocalcondError(f"{path}: {n} frame(s); labels need a trajectory")
    ions = None
    positions = None
    steps = np.zeros(n, dtype=np.int64)
    frame_ps = 0.0
    origin = np.zeros(3)
    for ions, frame in ion_frames(path, timestep_fs, ion_types, molecules):
        if positions is None:
            positions = np.empty((n, ions.n_ions, 3))
            origin = frame.dump.origin.copy()
        if frame.index == 1:
            frame_ps = frame.time_ps
        positions[frame.index] = frame.positions
        steps[frame.index] = frame.timestep
    assert ions is not None and positions is not None
    return Segment(path, ions, origin, frame_ps, positions, steps)


def accumulate_segment(segment: Segment, lags: np.ndarray, n_blocks: int) -> BlockSums:
    """Displacement statistics of one segment (origins and lags inside it)."""
    acc = DisplacementAccumulator(segment.ions.charges, segment.ions.species_index(), lags,
                                  len(segment.positions), n_blocks)
    for x in segment.positions:
        acc.add(x)
    return acc.sums


def label_origins(segment: Segment, window_frames: tuple[int, int], radii: tuple[float, ...],
                  stride_frames: int, temperature_k: float, n_salt: float | None = None,
                  first_origin: int = 0) -> dict[str, np.ndarray]:
    """Slope-form labels at origins first_origin, first_origin + stride, … whose
    window ends inside the segment."""
    f1, f2 = window_frames
    if not 0 < f1 < f2:
        raise LocalcondError(f"the label window needs 0 < tau1 < tau2, got {window_frames} frames")
    ions = segment.ions
    x = segment.positions
    origins = np.arange(first_origin, len(x) - f2, stride_frames)
    if origins.size == 0:
        raise LocalcondError(f"{segment.path}: no origin has a full window of {f2 * segment.frame_ps:g} ps")
    n_salt = n_salt or float((ions.charges > 0).sum())
    scale = ions.n_ions * molar_conductivity_prefactor(temperature_k, n_salt) / (
        (f2 - f1) * segment.frame_ps)
    q = ions.charges[:, None]
    out: dict[str, list] = {"label_exact": [], "collective": [], "positions_u16": []}
    for r in radii:
        out[f"label_truncated_R{r:g}"] = []
    for o in origins:
        qdr1 = q * (x[o + f1] - x[o])
        qdr2 = q * (x[o + f2] - x[o])
        dm1, dm2 = qdr1.sum(axis=0), qdr2.sum(axis=0)
        out["label_exact"].append(scale * (qdr2 @ dm2 - qdr1 @ dm1))
        out["collective"].append(float(dm2 @ dm2 - dm1 @ dm1))
        for r in radii:
            d1 = _truncated_dm(x[o], ions.cell, ions.pbc, qdr1, r)
            d2 = _truncated_dm(x[o], ions.cell, ions.pbc, qdr2, r)
            out[f"label_truncated_R{r:g}"].append(
                scale * (np.einsum("ix,ix->i", qdr2, d2) - np.einsum("ix,ix->i", qdr1, d1)))
        out["positions_u16"].append(quantize(x[o], segment.box_origin, ions.cell))
    arrays = {k: np.asarray(v, dtype=np.float64 if k == "collective" else None) for k, v in out.items()}
    for k in arrays:
        if k.startswith("label_"):
            arrays[k] = arrays[k].astype(np.float32)
    arrays["time_ps"] = origins * segment.frame_ps
    return arrays


def unusable_for_training(metadata: dict) -> str | None:
    """Why a training record's Λ must not be learned from (None when it may): its
    diffusive check failed, or it carries diffusive-regime warnings. The one rule the
    trainer, its cross-validation and the studies in training/ share."""
    if metadata.get("diffusive_check_passed") is False:
        return "its Lambda failed the diffusive check"
    if metadata.get("diffusive_warnings"):
        return "its Lambda carries diffusive-regime warnings"
    return None


def quantize(positions: np.ndarray, box_origin: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = (positions - box_origin) @ np.linalg.inv(cell)
    frac -= np.floor(frac)
    return (np.rint(frac * QUANT).astype(np.int64) % QUANT).astype(np.uint16)


def positions(record: dict, index: int | slice = slice(None)) -> np.ndarray:
    """Cartesian positions (Å, wrapped into the cell) of the stored origins."""
    frac = record["positions_u16"][index].astype(np.float64) / QUANT
    return record["box_origin"] + frac @ record["cell"]


def lambda_of_origins(collective: np.ndarray, metadata: dict) -> float:
    """Slope-form Λ (S cm² mol⁻¹) over the stored origins, from |ΔM|² alone."""
    t1, t2 = metadata["tau_window_ps"]
    prefactor = molar_conductivity_prefactor(metadata["temperature_k"], metadata["n_salt"])
    return float(prefactor * np.mean(collective) / (t2 - t1))


def write_record(path: str | Path, ions: IonSet, species_names: list[str], box_origin: np.ndarray,
                 arrays: dict[str, np.ndarray], metadata: dict, species_index: np.ndarray | None = None) -> Path:
    """Write a record (write to a temporary file, then rename). ``species_index``: each
    ion's index into ``species_names`` (default: the rank of its atom type among the
    types present, one species per type)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata, format=FORMAT, unit=UNIT, n_origins=int(len(arrays["collective"])),
                lambda_same_origins=lambda_of_origins(arrays["collective"], metadata),
                localcond_version=__version__)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, id=ions.ids, species=np.array(species_names),
                            species_index=ions.species_index() if species_index is None else species_index,
                            charge=ions.charges,
                            cell=ions.cell, box_origin=box_origin, pbc=np.array(ions.pbc),
                            metadata=json.dumps(meta), **arrays)
    return path


def read_record(path: str | Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            record = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError) as exc:
        raise LocalcondError(f"{path}: not a readable training record ({exc})") from None
    record["metadata"] = json.loads(str(record["metadata"]))
    if record["metadata"].get("format") != FORMAT:
        raise LocalcondError(f"{path}: format {record['metadata'].get('format')!r}, expected {FORMAT}")
    return record


def check_record(path: str | Path, rtol: float = 1e-6) -> dict:
    """Mean stored exact label against Λ over the same origins (from |ΔM|²): equal to
    float32 round-off. Returns the numbers; raises on a mismatch."""
    record = read_record(path)
    meta = record["metadata"]
    labels = record["label_exact"].astype(np.float64)
    mean_label = float(labels.mean())
    same = lambda_of_origins(record["collective"], meta)
    scale = float(np.abs(labels).mean())
    if abs(mean_label - same) > rtol * max(scale, abs(same)):
        raise LocalcondError(f"{path}: mean stored label {mean_label:.8g} differs from Lambda over the "
                             f"same origins {same:.8g} S cm^2/mol")
    if abs(same - meta["lambda_same_origins"]) > 1e-9 * abs(same):
        raise LocalcondError(f"{path}: stored lambda_same_origins {meta['lambda_same_origins']:.10g} "
                             f"differs from the recomputed {same:.10g}")
    return {"mean_label": mean_label, "lambda_same_origins": same, "n_origins": int(len(labels))}


def check_dense_record(path: str | Path, rtol: float = 5e-3) -> dict:
    """A dense-label record (:mod:`localcond.campaign.replicas`): at every origin and lag the
    sum over ions of the stored a_i = q_i Δr_i·ΔM/τ (float16) equals the collective
    |ΔM|²/τ stored in float64 (``dm2_per_ps``), to float16 rounding (``rtol`` of Σ|a_i|).
    Returns the numbers; raises on a mismatch."""
    try:
        with np.load(path, allow_pickle=False) as data:
            record = {k: data[k] for k in data.files}
        meta = json.loads(str(record["metadata"]))
    except (OSError, ValueError, KeyError) as exc:
        raise LocalcondError(f"{path}: not a readable dense-label record ({exc})") from None
    if meta.get("format") != DENSE_FORMAT:
        raise LocalcondError(f"{path}: format {meta.get('format')!r}, expected {DENSE_FORMAT}")
    a = record["a"].astype(np.float64)  # [O, L, N]
    summed, collective = a.sum(axis=2), record["dm2_per_ps"]
    worst = np.abs(summed - collective) / np.maximum(np.abs(a).sum(axis=2), 1e-300)
    if not np.all(worst <= rtol):
        o, lag = np.unravel_index(int(np.argmax(worst)), worst.shape)
        raise LocalcondError(f"{path}: at origin {o}, lag {record['lags_ps'][lag]:g} ps the ions' a_i sum to "
                             f"{summed[o, lag]:.6g}, the stored |dM|^2/tau is {collective[o, lag]:.6g}")
    return {"n_origins": int(a.shape[0]), "lags_ps": [float(t) for t in record["lags_ps"]],
            "largest_relative_mismatch": float(worst.max())}


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def update_manifest(directory: str | Path, record: Path, entry: dict, format: str = FORMAT) -> Path:
    """Add (or replace) one record's line in ``manifest.json`` of its directory (``format``:
    the records' format, for a new manifest)."""
    directory = Path(directory)
    manifest = directory / "manifest.json"
    data = json.loads(manifest.read_text()) if manifest.exists() else {"format": format, "records": {}}
    data["records"][record.name] = dict(entry, sha256=sha256(record), bytes=record.stat().st_size)
    data["records"] = dict(sorted(data["records"].items()))
    return write_json(manifest, data)


def check_directory(directory: str | Path) -> list[dict]:
    """Verify every record of a manifest: checksum, readability, label mean."""
    directory = Path(directory)
    manifest = directory / "manifest.json"
    if not manifest.exists():
        raise LocalcondError(f"{manifest}: no manifest")
    data = json.loads(manifest.read_text())
    rows = []
    listed = set(data["records"])
    present = {p.name for p in directory.glob("*.npz")}
    if present - listed:
        raise LocalcondError(f"{directory}: records not in the manifest: {sorted(present - listed)}")
    for name, entry in data["records"].items():
        path = directory / name
        if not path.exists():
            raise LocalcondError(f"{path}: listed in the manifest but missing")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise LocalcondError(f"{path}: sha256 {digest} differs from the manifest's {entry['sha256']}")
        check = check_dense_record if data.get("format") == DENSE_FORMAT else check_record
        rows.append({"record": name, **check(path)})
    return rows


def build_from_dumps(dumps: list[str | Path], species_names: dict[int, str | None], timestep_fs: float,
                     temperature_k: float, out: str | Path, window_ps: tuple[float, float] | None = None,
                     radii: tuple[float, ...] = (), stride_ps: float | None = None, max_origins: int = 100,
                     n_blocks: int = 5, molecules: bool = False, log=print) -> tuple[Path, dict]:
    """A training record from any LAMMPS dumps (``id type q xu yu zu``, one constant-volume
    trajectory each, e.g. consecutive segments or replicas of one system). The ions are
    the atoms of the types named in ``species_names`` (types mapped to None, e.g. a
    solvent's, are left out; every type of the dump needs an entry), or with
    ``molecules`` the molecular ions centred on them (the dump's ``mol`` column).

    Λ and its error budget come from :func:`localcond.campaign.labels.conductivity.analyse` over all
    dumps (window by the rule unless given); labels at origins every ``stride_ps`` (default:
    spread so that about ``max_origins`` are stored) inside each dump."""
    from localcond.campaign.labels.conductivity import Settings, accumulate, analyse

    present = np.unique(next(iter(read_dump(dumps[0]))).types)
    missing = sorted(int(t) for t in present if int(t) not in species_names)
    if missing:
        raise LocalcondError(f"no species name for atom type(s) {missing}: give --types with one name (or NULL) "
                             "per atom type")
    ion_types = tuple(sorted(t for t, name in species_names.items() if name is not None))
    settings = Settings(timestep_fs=timestep_fs, temperature_k=temperature_k, tau_window_ps=window_ps,
                        n_blocks=n_blocks, ion_types=ion_types, molecules=molecules)
    acc = accumulate(dumps, settings)
    summary = analyse(acc, settings)
    if summary["form"] != "slope":
        raise LocalcondError("the trajectories are too short for two candidate windows; give "
                             "--window-ps T1 T2 or longer runs")
    t1, t2 = summary["tau_window_ps"]
    f1, f2 = int(round(t1 / acc.frame_ps)), int(round(t2 / acc.frame_ps))
    total_ps = sum((n - 1) * acc.frame_ps for n in acc.n_frames)
    stride = stride_ps or max(acc.frame_ps, total_ps / max_origins)
    stride_frames = max(1, int(round(stride / acc.frame_ps)))
    parts = []
    first: Segment | None = None
    for k, path in enumerate(dumps):
        segment = load_segment(path, timestep_fs, ion_types, molecules)
        first = first or segment
        labels = label_origins(segment, (f1, f2), radii, stride_frames, temperature_k,
                               first_origin=stride_frames // 2)
        labels["segment"] = np.full(len(labels["collective"]), k)
        parts.append(labels)
        log(f"localcond dataset: {path}: {len(labels['collective'])} origins")
    assert first is not None
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    names = [str(species_names[int(t)]) for t in first.ions.species]
    lam = summary["molar_conductivity"]
    metadata = {
        "system": Path(out).stem, "concentration_mol_per_l": summary["concentration_mol_per_l"],
        "temperature_k": temperature_k, "n_salt": summary["n_salt"], "tau_window_ps": [t1, t2],
        "origin_stride_ps": stride_frames * acc.frame_ps, "label_radii_A": list(radii),
        "labels": {"form": "slope", "exact": "label_exact",
                   **{f"truncated_R{r:g}": f"label_truncated_R{r:g}" for r in radii}},
        "species_names": names,
        "species_charges": [float(first.ions.charges[first.ions.types == t][0]) for t in first.ions.species],
        "molar_conductivity": lam, "nernst_einstein": summary["nernst_einstein"],
        # None when the user gave the window: not checked (it used to read False, so the trainer
        # refused every record made with --window-ps)
        "diffusive_check_passed": summary.get("window_check_passed"),
        "diffusive_warnings": summary["diffusive_check"]["warnings"],
        "dumps": [str(Path(p).resolve()) for p in dumps],
    }
    path = write_record(out, first.ions, names, first.box_origin, arrays, metadata)
    return path, metadata
