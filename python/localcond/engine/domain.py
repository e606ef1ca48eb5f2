"""Is a run inside what the model was trained on? Three checks, each a warning at most.

- **Output**: a trained model's metadata list its training systems' Λ
  (``training.ensemble_spread``, one entry per system with its ``lambda``, S cm² mol⁻¹).
  A run whose Λ_pred lies far outside that range — below half the smallest or above
  twice the largest, or not positive when every training Λ is — is almost certainly
  outside the model's domain. Said once, after WARN_AFTER evaluations.
- **Structure**: ``training.domain`` (:func:`localcond.campaign.learn.ridge.descriptor_domain`)
  holds the training systems' mean features X (the model's descriptors averaged per
  species, S·F numbers) and a threshold on the distance D = rms over features of
  (X − mean)/std. The run's X, averaged over its first WARN_AFTER evaluations, farther
  than the threshold is outside (5 mol/L: D ≈ 12 with the default model, threshold
  5.4; the held-out systems: 0.2–1.9). Said once.
- **Dynamics**: ``training.dynamics`` records the training runs' masses per species
  and thermostat. A structure-only model cannot see the dynamics: with other masses
  or another thermostat the same structure moves at another speed (for Langevin
  dynamics D₀ = k_B T·damp/m), and Λ_pred is what the training dynamics would give.
  Said when the fix is set up (masses per atom type, the fix styles present; a
  thermostat's damping is not visible to the fix and is not checked).
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import numpy as np

from localcond.model.contract import ModelMetadata

WARN_AFTER = 10  # evaluations before the first look: a few, so that one odd frame does not decide
FACTOR = 2.0  # "far outside": below min / FACTOR or above max × FACTOR


def training_range(metadata: ModelMetadata) -> tuple[float, float] | None:
    """(smallest, largest) Λ of the training systems, S cm² mol⁻¹; None when the metadata
    do not list them (untrained or test models, models trained before the field existed)."""
    if not metadata.trained or metadata.purpose != "conductivity":
        return None
    spread = (metadata.training or {}).get("ensemble_spread") or {}
    values = [float(v["lambda"]) for v in spread.values() if isinstance(v, dict) and "lambda" in v]
    values = [v for v in values if math.isfinite(v)]
    return (min(values), max(values)) if values else None


def outside_note(metadata: ModelMetadata, lambda_pred: float) -> str | None:
    """A warning when ``lambda_pred`` lies far outside the training systems' Λ (module
    docstring); None when it does not or when the range is unknown."""
    known = training_range(metadata)
    if known is None or not math.isfinite(lambda_pred):
        return None
    lo, hi = known
    if lo / FACTOR <= lambda_pred <= hi * FACTOR and (lambda_pred > 0 or lo <= 0):
        return None
    return (f"WARNING: Lambda_pred = {lambda_pred:.4g} S cm^2/mol after {WARN_AFTER} evaluations lies far outside "
            f"the Lambda of the model's {len((metadata.training or {}).get('ensemble_spread', {}))} training systems "
            f"({lo:.4g} to {hi:.4g}): this system is probably outside what the model was trained on, and its "
            "numbers mean little")


MASS_TOLERANCE = 1e-3  # relative


def dynamics_problem(dynamics: dict, species: Sequence[str] | None = None) -> str | None:
    """What is wrong with a ``dynamics`` block (training configuration), or None;
    ``species``: the model's species, when known, which the masses must name."""
    masses = dynamics.get("masses", {})
    if not isinstance(masses, dict) or not masses or any(
            not isinstance(v, (int, float)) or not v > 0 for v in masses.values()):
        return "'masses' must map species names to positive masses (amu)"
    unknown = sorted(set(masses) - set(species)) if species is not None else []
    if unknown:
        return f"masses of {unknown}, which are not among the species {list(species)}"
    thermostat = dynamics.get("thermostat", {})
    if not isinstance(thermostat, dict) or not isinstance(thermostat.get("style"), str):
        return "'thermostat' must name the LAMMPS fix style of the training runs ({\"style\": \"langevin\", ...})"
    return None


def dynamics_note(metadata: ModelMetadata, type_species_index: Sequence[int], mass_min: Sequence[float],
                  mass_max: Sequence[float], fix_styles: Sequence[str] | None, by_type: bool = True) -> str | None:
    """A warning when the run's masses (per atom type, over all atoms: lowest and highest;
    min > max for a type without atoms) or its fixes differ from the training dynamics
    (module docstring); None when they agree or the metadata record none. ``fix_styles``
    None: the thermostat is not known (ASE) and not checked. ``by_type`` False: the
    entries are the model's species in order (ASE), named by species alone."""
    dynamics = (metadata.training or {}).get("dynamics") if metadata.trained else None
    if not dynamics:
        return None
    problems = []
    masses = dynamics.get("masses", {})
    for t, (index, lo, hi) in enumerate(zip(type_species_index, mass_min, mass_max), start=1):
        if index < 0 or lo > hi:
            continue
        name = metadata.species[index]
        expected = masses.get(name)
        if expected is None:
            continue
        if max(abs(lo - expected), abs(hi - expected)) > MASS_TOLERANCE * expected:
            shown = f"{lo:.6g}" if abs(hi - lo) <= MASS_TOLERANCE * expected else f"{lo:.6g} to {hi:.6g}"
            where = f"type {t} ({name})" if by_type else f"species {name}"
            problems.append(f"atoms of {where} have mass {shown}, the training runs {expected:g}")
    thermostat = dynamics.get("thermostat", {})
    style = thermostat.get("style")
    if style and fix_styles is not None and not any(f == style or f.startswith(style + "/") for f in fix_styles):
        damp = f", damp {thermostat['damp_fs']:g} fs" if "damp_fs" in thermostat else ""
        problems.append(f"no fix {style} (the training runs' thermostat{damp}); this run has "
                        f"{', '.join(sorted(set(fix_styles))) or 'no fixes'}")
    if not problems:
        return None
    return ("WARNING: this run's dynamics differ from the model's training runs: " + "; ".join(problems)
            + ". The model reads structure only: Lambda_pred is the conductivity the training dynamics would give "
            "this structure (with Langevin dynamics D0 = kB T damp / m), not this run's")


def descriptor_features(species: np.ndarray, descriptors: np.ndarray, n_species: int) -> np.ndarray:
    """Σ_{i of species s} p_i for each species, flattened [S·F] (the sums behind X;
    divide by the number of ions)."""
    sums = np.zeros((n_species, descriptors.shape[1]))
    np.add.at(sums, np.asarray(species, dtype=np.int64), descriptors)
    return sums.reshape(-1)


def spread_distance(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The root-mean-square over features of (x − mean)/std (dimensionless; x [..., S·F]):
    how far a system's features lie from the training systems', in units of their spread."""
    return np.sqrt(np.mean(((np.asarray(x) - mean) / std) ** 2, axis=-1))


def domain_distance(metadata: ModelMetadata, features: np.ndarray) -> float | None:
    """D = rms over features of (X − mean)/std for mean features X (module docstring), in
    training spreads; None without a domain in the metadata or for features of another shape."""
    domain = (metadata.training or {}).get("domain") if metadata.trained else None
    if not domain or not np.all(np.isfinite(features)):
        return None
    mean, std = np.asarray(domain["mean"]), np.asarray(domain["std"])
    if features.shape != mean.shape:
        return None
    return float(spread_distance(features, mean, std))


def structure_note(metadata: ModelMetadata, features: np.ndarray) -> str | None:
    """A warning when the run's mean features X lie farther from the training systems'
    than the metadata's threshold (module docstring); None inside or without a domain."""
    distance = domain_distance(metadata, features)
    if distance is None or distance <= metadata.training["domain"]["threshold"]:
        return None
    domain = metadata.training["domain"]
    farthest = max(domain["leave_one_out_distance"].values())
    return (f"WARNING: the structure of this run lies outside the model's training domain: its mean descriptors "
            f"are {distance:.3g} training spreads from the training systems' (threshold {domain['threshold']:.3g}, "
            f"{domain['margin']:g} x the farthest training system left out, {farthest:.3g}); Lambda_pred and "
            "lambda here are extrapolations")
