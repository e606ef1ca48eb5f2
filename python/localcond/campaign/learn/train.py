"""``localcond train CONFIG``: learn the local molar conductivity f(environment)
from training records, in one of three supervision modes (doc/design.md §1):

- ``labels``: least squares on per-ion labels λ_i (``label``: ``exact`` or a
  truncated form), so f → E[λ_i | environment]. Validation: the last
  production segments of every training system (time blocks; label windows
  lie inside segments, so training and validation labels share no frames).
- ``system`` (the paper's): Σ_s [(mean_i f − Λ_s) / σ_s]² over training
  systems, σ_s the system's total error. Validation: whole systems.
- ``combined``: ``labels`` on truncated labels (``label``, e.g.
  ``truncated_R25``: far less noisy, biased), then a correction model trained
  in ``system`` mode on what remains, f = base + correction. The base has seen
  the labels of every training system, so the correction's validation χ² is
  optimistic; held-out systems (never trained on) are the honest test.

An ensemble of ``ensemble`` members (seeds seed, seed+1, …; in ``system``
mode each its own validation systems) is exported as one TorchScript file
whose output is the members' mean. Early stopping on the validation loss,
a checkpoint per member and epoch that a rerun resumes from, a progress bar.

``solver``: ``adam`` (the above) or ``ridge``, for ``system`` mode with a
power-spectrum model whose readout is linear (``"hidden": []``): the objective
is then solved exactly with a ridge penalty chosen by leave-one-system-out χ²
over ``alphas`` (:mod:`localcond.campaign.learn.ridge`). Its members are not set by
``ensemble`` (refused with it): there is one per training system (the jackknife,
:func:`localcond.campaign.learn.ridge.jackknife_members`), their mean that fit, their
spread its standard error from the finite set of systems.

Configuration (JSON; paths relative to the file)::

    {"records": ["../training/data/implicit-v2/*.npz"], "out": "../runs/train/ps-labels",
     "model": {"family": "power-spectrum", "cutoff": 10.0},
     "mode": "labels", "label": "exact", "ensemble": 5, "epochs": 100, "patience": 15,
     "steps_per_epoch": 50, "batch_frames": 8, "lr": 0.001, "seed": 0,
     "validation_fraction": 0.2, "correction": {"family": "power-spectrum", "cutoff": 6.0}}

Records with role ``heldout`` are never trained on; records whose Λ failed the
diffusive check or carries diffusive-regime warnings are not used at all
(:func:`localcond.campaign.dataset.unusable_for_training`).
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from localcond import __version__
from localcond.campaign.dataset import unusable_for_training
from localcond.errors import LocalcondError
from localcond.io.files import atomic_path, dataclass_from, read_json
from localcond.campaign.learn import ridge
from localcond.campaign.learn.data import Batch, SystemData, collate, load_system
from localcond.campaign.learn.modules import Ensemble, Scaled, SharedDescriptorEnsemble, Sum
from localcond.engine.domain import dynamics_problem
from localcond.model.contract import ModelMetadata
from localcond.model.export import save_model
from localcond.model.families import make_model

MODES = ("labels", "system", "combined")
SOLVERS = ("adam", "ridge")


@dataclass
class TrainConfig:
    records: list[str]
    out: str
    model: dict
    mode: str = "labels"
    label: str = "exact"
    ensemble: int = 5
    epochs: int = 100
    patience: int = 15
    steps_per_epoch: int = 50
    batch_frames: int = 8
    lr: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.2
    correction: dict = field(default_factory=dict)
    dtype: str = "float32"
    solver: str = "adam"
    alphas: list[float] = field(default_factory=list)  # ridge penalties to choose from (default: ridge.py)
    # the training runs' dynamics, copied to the model's metadata for the live check
    # (localcond.engine.domain.dynamics_note): {"masses": {species: amu}, "thermostat": {"style": …}, …}
    dynamics: dict = field(default_factory=dict)

    def digest(self, data: str = "") -> str:
        """Identifies a training run: the configuration and (``data``) the records' checksums."""
        text = json.dumps(asdict(self), sort_keys=True) + data
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    data = read_json(path, "training configuration")
    config = dataclass_from(data, TrainConfig, path)
    given = set(data)  # which keys the file sets
    base = path.parent
    config.records = [str((base / r).resolve()) if not os.path.isabs(r) else r for r in config.records]
    config.out = str((base / config.out).resolve()) if not os.path.isabs(config.out) else config.out
    if config.mode not in MODES:
        raise LocalcondError(f"{path}: mode must be one of {MODES}, got {config.mode!r}")
    if "family" not in config.model:
        raise LocalcondError(f"{path}: model needs a 'family'")
    if config.mode == "combined" and not config.label.startswith("truncated"):
        raise LocalcondError(f"{path}: mode 'combined' trains on truncated labels; set label to e.g. "
                             "'truncated_R25'")
    if config.ensemble < 1 or config.epochs < 1 or config.batch_frames < 1:
        raise LocalcondError(f"{path}: ensemble, epochs and batch_frames must be positive")
    if config.dynamics:
        problem = dynamics_problem(config.dynamics)
        if problem:
            raise LocalcondError(f"{path}: dynamics: {problem}")
    if config.solver not in SOLVERS:
        raise LocalcondError(f"{path}: solver must be one of {SOLVERS}, got {config.solver!r}")
    if config.solver == "ridge":
        if config.mode != "system":
            raise LocalcondError(f"{path}: solver 'ridge' fits the 'system' objective; mode is {config.mode!r}")
        if config.model["family"] != "power-spectrum" or list(config.model.get("hidden", [None])) != []:
            raise LocalcondError(f"{path}: solver 'ridge' fits a linear readout of fixed descriptors: use "
                                 "family 'power-spectrum' with \"hidden\": []")
        if "ensemble" in given:
            raise LocalcondError(f"{path}: solver 'ridge' takes no 'ensemble': its members are the jackknife "
                                 "fits, one per training system")
        if any(not (math.isfinite(a) and a > 0) for a in config.alphas):
            raise LocalcondError(f"{path}: alphas must be positive numbers, got {config.alphas}")
    return config


def record_paths(patterns: list[str]) -> list[Path]:
    paths = sorted({Path(p) for pattern in patterns for p in glob.glob(pattern)})
    if not paths:
        raise LocalcondError(f"no training records match {patterns}")
    return paths


def species_of(paths: list[Path]) -> tuple[list[str], list[float]]:
    """The species (first-seen order) and their charges over all records."""
    from localcond.campaign.dataset import read_record

    names: list[str] = []
    charges: list[float] = []
    for path in paths:
        meta = read_record(path)["metadata"]
        for name, charge in zip(meta["species_names"], meta["species_charges"]):
            if name not in names:
                names.append(name)
                charges.append(float(charge))
            elif charges[names.index(name)] != float(charge):
                raise LocalcondError(f"{path}: species {name} has charge {charge}, elsewhere "
                                     f"{charges[names.index(name)]}")
    return names, charges


# --- losses -----------------------------------------------------------------

def descriptor_key(module: torch.nn.Module) -> str | None:
    """A name for a module's fixed (parameter-free) descriptors, if it has a separate
    ``readout``; frames cache them under this name so training skips recomputing them."""
    if not (hasattr(module, "readout") and hasattr(module, "descriptors")):
        return None
    return f"power-spectrum:{module.cutoff}:{module.n_max}:{module.l_max}"


def _predict(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    if isinstance(model, Sum):
        return _predict(model.base, batch) + _predict(model.correction, batch)
    if isinstance(model, Scaled):
        key = descriptor_key(model.inner)
        if key is not None and key in batch.cache:
            return model.offset + model.scale * model.inner.readout(batch.species, batch.cache[key])
    return model(batch.species, batch.edge_index, batch.edge_vec, batch.n_nodes)


def labels_loss(model: torch.nn.Module, batch: Batch, key: str, scale: float) -> torch.Tensor:
    """Mean squared error of per-ion labels, in units of ``scale``²."""
    return ((_predict(model, batch) - batch.labels[key]) / scale).pow(2).mean()


def system_loss(model: torch.nn.Module, batch: Batch, systems: list[SystemData]) -> torch.Tensor:
    """Mean over the batch's systems of ((mean f over their frames and ions) − Λ_s)² / σ_s²."""
    pred = _predict(model, batch)
    n_frames = len(batch.frame_system)
    frame_mean = torch.zeros(n_frames, dtype=pred.dtype).index_add_(0, batch.node_frame, pred)
    frame_mean = frame_mean / torch.bincount(batch.node_frame, minlength=n_frames).to(pred.dtype)
    terms = []
    for s in sorted(set(batch.frame_system)):
        mask = torch.tensor([fs == s for fs in batch.frame_system])
        terms.append(((frame_mean[mask].mean() - systems[s].lam) / systems[s].lam_error) ** 2)
    return torch.stack(terms).mean()


# --- splits and sampling ------------------------------------------------------

def time_split(system: SystemData, fraction: float) -> tuple[list[int], list[int]]:
    """Frame indices (train, validation): validation = the last ⌈fraction · n⌉ production
    segments (at least one), train = the rest; a system with one segment is all train."""
    segments = sorted({f.segment for f in system.frames})
    n_val = max(1, math.ceil(fraction * len(segments))) if len(segments) > 1 else 0
    val_segments = set(segments[len(segments) - n_val:])
    train = [k for k, f in enumerate(system.frames) if f.segment not in val_segments]
    val = [k for k, f in enumerate(system.frames) if f.segment in val_segments]
    return train, val


def system_split(n: int, fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    order = rng.permutation(n)
    n_val = max(1, round(fraction * n)) if n > 2 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


# --- one fit ------------------------------------------------------------------

@dataclass
class FitResult:
    model: torch.nn.Module
    best_validation: float
    epochs: int
    history: list[dict]


def fit(model: torch.nn.Module, train_step, validate, config: TrainConfig, digest: str, checkpoint: Path,
        rng: np.random.Generator, description: str, trainable=None) -> FitResult:
    """Adam with early stopping on ``validate()``; resumes from ``checkpoint`` when it was
    written by the same run (``digest``: configuration and data)."""
    params = [p for p in (trainable or model).parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    state = {"epoch": 0, "best": math.inf, "best_state": copy.deepcopy(model.state_dict()),
             "bad": 0, "history": []}
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("digest") == digest:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
            state = saved["state"]
    progress = _progress(config.epochs, state["epoch"], description)
    while state["epoch"] < config.epochs and state["bad"] < config.patience:
        model.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            optimizer.zero_grad()
            loss = train_step(model)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            val = float(validate(model))
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "train": float(np.mean(losses)), "validation": val})
        if val < state["best"]:
            state.update(best=val, best_state=copy.deepcopy(model.state_dict()), bad=0)
        else:
            state["bad"] += 1
        _save_checkpoint(checkpoint, {"digest": digest, "model": model.state_dict(),
                                      "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
                                      "torch_rng": torch.get_rng_state(), "state": state})
        progress.update(1)
        progress.set_postfix(train=f"{np.mean(losses):.3g}", val=f"{val:.3g}", best=f"{state['best']:.3g}")
    progress.close()
    model.load_state_dict(state["best_state"])
    return FitResult(model, state["best"], state["epoch"], state["history"])


def _progress(total: int, done: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=description, unit="epoch", file=sys.stderr,
                disable=None, leave=False)


def _save_checkpoint(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


# --- the modes ----------------------------------------------------------------

@dataclass
class RidgeSetup:
    x: np.ndarray  # [systems, S·F] feature vectors
    lam: np.ndarray
    sigma: np.ndarray
    alpha: float
    table: list[dict]  # leave-one-system-out χ² of every penalty tried
    fits: list[ridge.LinearFit]  # the members


class Trainer:
    def __init__(self, config: TrainConfig, log=print) -> None:
        self.config = config
        self.log = log
        self.paths = record_paths(config.records)
        from localcond.campaign.dataset import sha256

        self.digest = config.digest("".join(sha256(p) for p in self.paths))
        self.species, self.charges = species_of(self.paths)
        problem = config.dynamics and dynamics_problem(config.dynamics, self.species)
        if problem:
            raise LocalcondError(f"dynamics: {problem}")
        _, template = make_model(config.model["family"], self.species, self.charges,
                                 **self._options(config.model))
        self.cutoff = template.cutoff
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        keys = ["exact"] + ([config.label] if config.label != "exact" else [])
        every = [load_system(p, self.species, self.cutoff, self.dtype, keys) for p in self.paths]
        excluded = {s.name: why for s in every if (why := unusable_for_training(s.metadata)) is not None}
        for name, why in excluded.items():
            log(f"not used: {name} ({why})")
        every = [s for s in every if s.name not in excluded]
        self.systems = [s for s in every if s.role != "heldout"]
        self.heldout = [s for s in every if s.role == "heldout"]
        if len(self.systems) < 1:
            raise LocalcondError("no training systems (all records are held out)")
        lams = np.array([s.lam for s in self.systems])
        self.offset = float(lams.mean())
        self.scale = float(max(lams.std(), 0.1 * abs(lams.mean()), 1e-6))
        self._ridge: RidgeSetup | None = None

    @staticmethod
    def _options(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k != "family"}

    def new_model(self, spec: dict, seed: int, offset: float, scale: float) -> Scaled:
        torch.manual_seed(seed)
        module, _ = make_model(spec["family"], self.species, self.charges, **self._options(spec))
        module = module.to(self.dtype)
        key = descriptor_key(module)
        if key is not None:  # fixed descriptors: computed once per frame, inputs standardised on them
            self._cache_descriptors(module, key)
            frames = [f for s in self.systems for f in s.frames]
            module.set_standardization(torch.cat([f.species for f in frames]),
                                       torch.cat([f.cache[key] for f in frames]))
        return Scaled(module, offset, scale).to(self.dtype)

    def _cache_descriptors(self, module: torch.nn.Module, key: str) -> None:
        with torch.no_grad():
            for system in self.systems:
                for frame in system.frames:
                    if key not in frame.cache:
                        n = int(frame.species.shape[0])
                        frame.cache[key] = module.descriptors(frame.species, frame.edge_index,
                                                              frame.edge_vec, n)

    def member(self, m: int) -> tuple[torch.nn.Module, dict]:
        config = self.config
        seed = config.seed + m
        rng = np.random.default_rng(seed)
        directory = Path(config.out) / f"member{m}"
        if config.solver == "ridge":
            return self._ridge_member(m)
        if config.mode == "system":
            return self._system_member(m, seed, rng, directory)
        base, info = self._labels_member(m, seed, rng, directory, config.label)
        if config.mode == "labels":
            return base, info
        for p in base.parameters():
            p.requires_grad_(False)
        spec = config.correction or config.model
        correction = self.new_model(spec, seed + 1000, 0.0, self.scale)
        combined = Sum(base, correction)
        model, system_info = self._system_fit(combined, seed, rng, directory / "correction.pt",
                                              f"member {m} correction", trainable=correction)
        return model, {"labels_stage": info, "correction_stage": system_info}

    def _labels_member(self, m: int, seed: int, rng: np.random.Generator, directory: Path,
                       key: str) -> tuple[torch.nn.Module, dict]:
        config = self.config
        splits = [time_split(s, config.validation_fraction) for s in self.systems]
        train = [(si, k) for si, (tr, _) in enumerate(splits) for k in tr]
        val = [(si, k) for si, (_, va) in enumerate(splits) for k in va]
        if not val:
            raise LocalcondError("labels mode needs systems with at least two production segments "
                                 "(validation is by time block): make each record from two or more dumps "
                                 "of the system, e.g. the production run split in two with undump/dump, "
                                 "as 'localcond dataset part1.dump part2.dump --types ... --out REC.npz'")
        labels = torch.cat([self.systems[si].frames[k].labels[key] for si, k in train])
        scale = float(labels.std())
        model = self.new_model(config.model, seed, self.offset, self.scale)

        def step(model):
            pick = rng.choice(len(train), size=min(config.batch_frames, len(train)), replace=False)
            batch = collate([self.systems[train[i][0]].frames[train[i][1]] for i in pick],
                            [train[i][0] for i in pick])
            return labels_loss(model, batch, key, scale)

        val_batches = [collate([self.systems[si].frames[k] for si, k in val[i:i + 16]],
                               [si for si, _ in val[i:i + 16]]) for i in range(0, len(val), 16)]

        def validate(model):
            total = sum(labels_loss(model, b, key, scale) * b.n_nodes for b in val_batches)
            return total / sum(b.n_nodes for b in val_batches)

        result = fit(model, step, validate, config, self.digest, directory / "labels.pt", rng,
                     f"member {m} ({key})")
        return result.model, {"mode": "labels", "label": key, "label_std": scale,
                              "validation_mse_over_label_var": result.best_validation,
                              "epochs": result.epochs, "validation": "time blocks: last segments"}

    def _system_member(self, m: int, seed: int, rng: np.random.Generator,
                       directory: Path) -> tuple[torch.nn.Module, dict]:
        # output offset and scale from this member's training systems only
        train, _ = system_split(len(self.systems), self.config.validation_fraction,
                                np.random.default_rng(seed + 7))
        lams = np.array([self.systems[s].lam for s in train])
        scale = float(max(lams.std(), 0.1 * abs(lams.mean()), 1e-6))
        model = self.new_model(self.config.model, seed, float(lams.mean()), scale)
        return self._system_fit(model, seed, rng, directory / "system.pt", f"member {m} (system)")

    def _ridge_member(self, m: int) -> tuple[torch.nn.Module, dict]:
        """A linear readout solved in closed form (module docstring, ``solver``): the m-th
        jackknife member."""
        if self._ridge is None:
            self._ridge = self._ridge_setup()
        fit = self._ridge.fits[m]
        module, _ = make_model(self.config.model["family"], self.species, self.charges,
                               **self._options(self.config.model))
        weights = torch.as_tensor(fit.weights.reshape(len(self.species), -1))
        with torch.no_grad():
            for s, mlp in enumerate(module.mlps):
                mlp[0].weight.copy_(weights[s].unsqueeze(0))
                mlp[0].bias.fill_(fit.intercept)
        info = {"mode": "system", "solver": "ridge", "alpha": self._ridge.alpha, "alphas": self._ridge.table,
                "member": f"jackknife member {m} (without {self.systems[m].name})"}
        return Scaled(module.to(self.dtype), 0.0, 1.0).to(self.dtype), info

    def _ridge_setup(self) -> RidgeSetup:
        """Every training system's feature vector X, Λ, σ, the penalty chosen on them and the fits."""
        module, _ = make_model(self.config.model["family"], self.species, self.charges,
                               **self._options(self.config.model))
        key = descriptor_key(module)
        self._cache_descriptors(module.to(self.dtype), key)
        x = np.stack([ridge.system_features([f.species.numpy() for f in s.frames],
                                            [f.cache[key].double().numpy() for f in s.frames], len(self.species))
                      for s in self.systems])
        lam = np.array([s.lam for s in self.systems])
        sigma = np.array([s.lam_error for s in self.systems])
        alphas = self.config.alphas or ridge.DEFAULT_ALPHAS
        alpha, table = ridge.choose_alpha(x, lam, sigma, alphas)
        self.log(f"ridge alpha {alpha:.3g} (leave-one-system-out chi2 {min(r['loo_chi2'] for r in table):.3g})")
        warning = ridge.edge_warning(alpha, alphas)
        if warning:
            self.log(warning)
        return RidgeSetup(x, lam, sigma, alpha, table, ridge.jackknife_members(x, lam, sigma, alpha))

    def _system_fit(self, model: torch.nn.Module, seed: int, rng: np.random.Generator, checkpoint: Path,
                    description: str, trainable=None) -> tuple[torch.nn.Module, dict]:
        config = self.config
        train, val = system_split(len(self.systems), config.validation_fraction,
                                  np.random.default_rng(seed + 7))
        if not val:
            val = train  # too few systems to hold any out: validation on the training systems
        per_system = max(1, config.batch_frames // 4)

        def step(model):
            chosen = rng.choice(train, size=min(4, len(train)), replace=False)
            frames, owners = [], []
            for s in chosen:
                picks = rng.choice(len(self.systems[s].frames), size=min(per_system, len(self.systems[s].frames)),
                                   replace=False)
                frames += [self.systems[s].frames[k] for k in picks]
                owners += [int(s)] * len(picks)
            return system_loss(model, collate(frames, owners), self.systems)

        def validate(model):
            terms = [system_loss(model, collate(self.systems[s].frames, [s] * len(self.systems[s].frames)),
                                 self.systems) for s in val]
            return torch.stack(terms).mean()

        result = fit(model, step, validate, config, self.digest, checkpoint, rng, description, trainable)
        return result.model, {"mode": "system", "validation_chi2": result.best_validation,
                              "validation_systems": [self.systems[s].name for s in val],
                              "epochs": result.epochs}

    def run(self, command: str) -> Path:
        members, infos = [], []
        count = self._n_members()
        for m in range(count):
            model, info = self.member(m)
            members.append(model.eval())
            infos.append(info)
            self.log(f"member {m + 1}/{count} done: {json.dumps(info)[:200]}")
        ensemble = self._ensemble(members)
        spread = self._ensemble_spread(members)
        windows = sorted({tuple(s.metadata["tau_window_ps"]) for s in self.systems})
        temperatures = sorted({s.metadata["temperature_k"] for s in self.systems})
        metadata = ModelMetadata(
            species=tuple(self.species), charges=tuple(self.charges), cutoff=self.cutoff,
            n_layers=self._n_layers(), dtype=self.config.dtype,
            kind=f"ensemble/{self.config.model['family']}",
            description=(f"{count}-member ensemble of {self.config.model['family']} models "
                         f"trained in '{self.config.mode}' mode ({self.config.solver}) on {len(self.systems)} systems"),
            trained=True, temperature_k=temperatures[0] if len(temperatures) == 1 else None,
            training_systems=tuple(s.name for s in self.systems),
            training={"mode": self.config.mode, "label": self.config.label, "label_form": "slope",
                      "tau_windows_ps": [list(w) for w in windows], "members": infos,
                      "ensemble_spread": spread,
                      **({"domain": ridge.descriptor_domain(self._ridge.x, [s.name for s in self.systems])}
                         if self._ridge is not None else {}),
                      **({"dynamics": self.config.dynamics} if self.config.dynamics else {}),
                      "config": asdict(self.config), "command": command,
                      "records": [str(p) for p in self.paths], "localcond_version": __version__},
        )
        path = Path(self.config.out) / "model.pt"
        save_model(ensemble, metadata, path)
        return path

    def _n_members(self) -> int:
        """``ensemble``, except for ridge's jackknife: one member per training system."""
        if self.config.solver == "ridge":
            return len(self.systems)
        return self.config.ensemble

    @staticmethod
    def _ensemble(members: list[torch.nn.Module]) -> torch.nn.Module:
        """One module for the members: sharing one descriptor when they all have the same
        parameter-free one (k times cheaper), else the plain mean of their outputs."""
        keys = {descriptor_key(m.inner) if isinstance(m, Scaled) else None for m in members}
        if len(keys) == 1 and None not in keys:
            return SharedDescriptorEnsemble(members)  # type: ignore[arg-type]
        return Ensemble(members)

    def _ensemble_spread(self, members: list[torch.nn.Module]) -> dict:
        """Per training system: each member's Λ_pred (mean of f over its frames and ions) and
        their standard deviation, in S cm² mol⁻¹."""
        out = {}
        with torch.no_grad():
            for index, system in enumerate(self.systems):
                batch = collate(system.frames, [index] * len(system.frames))
                values = [float(_predict(m, batch).double().mean()) for m in members]
                out[system.name] = {"members": values,
                                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                                    "lambda": system.lam}
        return out

    def _n_layers(self) -> int:
        _, meta = make_model(self.config.model["family"], self.species, self.charges,
                             **self._options(self.config.model))
        layers = meta.n_layers
        if self.config.mode == "combined" and self.config.correction:
            _, corr = make_model(self.config.correction["family"], self.species, self.charges,
                                 **self._options(self.config.correction))
            if corr.receptive_field > meta.receptive_field:
                raise LocalcondError("the correction model must not reach further than the base model")
        return layers


def train(config_path: str | Path, log=print) -> Path:
    if read_json(Path(config_path), "training configuration").get("solver") == "field":
        from localcond.campaign.learn.field_fit import train_field

        return train_field(config_path, log)
    config = load_config(config_path)
    command = "localcond train " + str(config_path)
    return Trainer(config, log).run(command)
