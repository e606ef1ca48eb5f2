"""Fit a local conductivity *field* (doc/design.md §1.6): the two-scale linear model
(:mod:`localcond.model.two_scale`) on three kinds of data at once.

Per training system (dense-label records of ``localcond replicas``, training records of
``localcond generate`` and the cards' rows), in the standardised design φ_i = [1, p_i, p̄_i]
per species block:

- **labels** — the slope-form per-ion labels over [τ_λ, 2τ_λ] (τ_λ = 5 ps), as
  within-frame contrasts: label and φ minus their means over the ions of the
  frame. Contrasts carry what distinguishes ions of one frame and none of the
  collective noise the labels share; their weight is 1 / (2 var) of the
  system's contrasts (neighbouring origins, 5 ps apart, share half their window);
- **Λ** — the mean of φ over ions and origins against the card's Λ, with the
  error that covers long lags (``long_lag_check.total_error`` of the replica
  table, :mod:`localcond.campaign.long_lag`). The mean is taken over the frames of
  the system's training record when ``records`` has one (about 100 frames spread
  over the grid's whole run, as the one-scale system fit and ``localcond evaluate``
  take it), else over the dense origins (a few hundred ps of one run). A system with
  a training record but no dense record (the ion-size family) enters with Λ and its
  share only;
- **the first species' share** — the mean over origins of (1/N) Σ_{i of species 0} φ_i
  against t Λ, t the measured share of Λ_EH pooled over the grid's run, the replica
  and the tables of ``share_tables`` (inverse variance), error σ_t Λ ⊕ t σ_Λ;
- **a prior on that share** (optional, ``share_prior_widths``): the same mean against
  t₀ Λ_pred, error w Λ, with t₀ the ideal share of uncorrelated ions under the training
  runs' Langevin thermostat (:func:`ideal_share`: D₀ ∝ 1/m, 0.75 for masses 20/60) and
  w a width in share (null: no prior). The measured shares of single systems carry
  errors of ±0.004–0.15; the prior keeps the fit from reading their scatter as structure.
  Whether it does better is the leave-one-out's call (the share χ² of each width is in
  the model's metadata, ``training.leave_one_out``).

Weighted least squares with a ridge penalty α_own on the weights of p (which vary
ion to ion) and α_around on those of p̄ (which vary little within a system),
intercepts free. The penalties and the prior's width are chosen by leave-one-training-system-out, by the
checks a model must pass (issue 24, item 5): among the pairs whose pooled
within-system calibration slope of the left-out systems' labels on their predictions
lies in ``slope_range`` (0.8–1.2, the held-out criterion), the one with the smallest
mean χ² of the left-out Λ and shares (the held-out systems play no part).
The metadata also carry what the fix's domain checks read (:mod:`localcond.engine.domain`):
the training runs' ``dynamics`` (from the configuration), each training system's members'
Λ_pred (``ensemble_spread``) and the structure ``domain`` of the training systems' mean
own spectra (:func:`localcond.campaign.learn.ridge.descriptor_domain`).
Members: the jackknife of the fit over training systems (as
:func:`localcond.campaign.learn.ridge.jackknife_members`), so that their mean is the
fit and their spread its uncertainty from the finite set of systems. After the fit,
the held-out systems are checked (Λ, share, calibration) for the card and for the
metadata's ``validation`` — reported, never used to choose — on ``heldout_dense``
when given (the dense held-out set of ``training/replicas_heldout_dense.json``, its
segments joined), else on the held-out records among ``dense``.

Units: λ, Λ in S cm² mol⁻¹; lengths in Å; times in ps.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from localcond import __version__
from localcond.campaign.dataset import positions, read_record, unusable_for_training
from localcond.campaign.generate import cation_share
from localcond.campaign.learn.field_check import DenseRecord, calibration, read_dense_systems
from localcond.campaign.learn.ridge import descriptor_domain
from localcond.engine.domain import dynamics_problem
from localcond.engine.neighbors import periodic_edges
from localcond.errors import LocalcondError
from localcond.io.files import atomic_path, read_dataclass, read_json
from localcond.model.contract import ModelMetadata
from localcond.model.export import save_model
from localcond.model.two_scale import make_two_scale_model

HELD_OUT_LIMITS = {"interpolation": 0.05, "extrapolation": 0.10}  # |Λ_pred/Λ − 1| (issue 24, item 5)
SLOPE_RANGE = (0.8, 1.2)


@dataclass
class FieldConfig:
    dense: list[str]  # dense-label records (globs), relative to the config file
    tables: list[str]  # the cards' tables (training/systems.json, training/systems_sizes.json)
    replica_table: str  # training/replica_systems.json: long-lag errors, replica shares
    out: str
    model: dict = field(default_factory=lambda: {"family": "two-scale", "cutoff": 30.0, "inner_cutoff": 10.0})
    label_window_ps: list[float] = field(default_factory=lambda: [5.0, 10.0])
    alphas_own: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    alphas_around: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3])
    slope_range: list[float] = field(default_factory=lambda: list(SLOPE_RANGE))
    # widths of the prior on each training system's first-species share around the ideal
    # share (null: no prior), chosen by leave-one-out with the penalties; needs ``dynamics``
    share_prior_widths: list[float | None] = field(default_factory=lambda: [None])
    heldout_dense: list[str] = field(default_factory=list)  # held-out records for the checks (globs)
    share_tables: list[str] = field(default_factory=list)  # more replica tables whose shares are pooled
    records: list[str] = field(default_factory=list)  # training records (globs): the systems' mean features
    grids: list[str] = field(default_factory=list)  # the grids of the systems: held-out classes (sizes, masses)
    # the training runs' dynamics, copied to the model's metadata for the live check
    # (localcond.engine.domain.dynamics_note), as in the other solvers' configurations
    dynamics: dict = field(default_factory=dict)
    solver: str = "field"


def load_field_config(path: str | Path) -> FieldConfig:
    path = Path(path)
    config = read_dataclass(path, FieldConfig, "training configuration")
    base = path.parent

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else str((base / p).resolve())

    config.dense = [resolve(p) for p in config.dense]
    config.heldout_dense = [resolve(p) for p in config.heldout_dense]
    config.share_tables = [resolve(p) for p in config.share_tables]
    config.records = [resolve(p) for p in config.records]
    config.grids = [resolve(p) for p in config.grids]
    config.tables = [resolve(p) for p in config.tables]
    config.replica_table, config.out = resolve(config.replica_table), resolve(config.out)
    if config.model.get("family") != "two-scale":
        raise LocalcondError(f"{path}: solver 'field' fits the 'two-scale' family, got {config.model.get('family')!r}")
    t1, t2 = config.label_window_ps
    if not (0 < t1 and math.isclose(t2, 2 * t1)):
        raise LocalcondError(f"{path}: label_window_ps must be [tau, 2 tau], got {config.label_window_ps}")
    if any(not (math.isfinite(a) and a > 0) for a in config.alphas_own + config.alphas_around):
        raise LocalcondError(f"{path}: penalties must be positive numbers")
    if len(config.slope_range) != 2 or not config.slope_range[0] < config.slope_range[1]:
        raise LocalcondError(f"{path}: slope_range must be [low, high], got {config.slope_range}")
    if config.dynamics:
        problem = dynamics_problem(config.dynamics)
        if problem:
            raise LocalcondError(f"{path}: dynamics: {problem}")
    widths = config.share_prior_widths
    if not widths or any(w is not None and not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0)
                         for w in widths):
        raise LocalcondError(f"{path}: share_prior_widths must be a list of positive numbers or null (no prior), "
                             f"got {widths}")
    if any(w is not None for w in widths):
        thermostat = config.dynamics.get("thermostat") or {}
        if not config.dynamics.get("masses") or thermostat.get("style") != "langevin":
            raise LocalcondError(f"{path}: a share prior needs dynamics with the species' masses and a langevin "
                                 "thermostat (the ideal share assumes one damping time: D0 proportional to 1/m)")
    return config


def ideal_share(counts: dict[str, int], charges: dict[str, float], masses: dict[str, float], first: str) -> float:
    """The share of ``first`` in the conductivity of uncorrelated ions under a Langevin
    thermostat with one damping time for all species (D0_s = k_B T damp / m_s):
    n_first q_first² / m_first divided by Σ_s n_s q_s² / m_s (counts n, charges q in e,
    masses m in g/mol; the share is dimensionless). For a 1:1 salt of masses 20 and 60 it is
    60 / 80 = 0.75."""
    missing = sorted(set(counts) - set(masses))
    if missing:
        raise LocalcondError(f"ideal share: no masses for {missing}")
    weight = {s: counts[s] * charges[s] ** 2 / masses[s] for s in counts}
    return weight[first] / sum(weight.values())


@dataclass
class SystemRows:
    """One system's data: its raw features (float32, to keep thousands of origins in
    memory) and what the normal equations and the checks need. The standardised design
    φ = [1, (x − mean)/std] per species block is formed a few origins at a time."""

    name: str
    role: str
    labels: np.ndarray | None  # [O, N]; None: a system known by its mean features only
    raw: np.ndarray | None  # [O, N, F + F'] (F' = the module's n_around)
    species: np.ndarray  # [N] species index
    scale: list[tuple[np.ndarray, np.ndarray]]  # per species: mean, std of the raw features
    lam: float
    lam_error: float
    share: float | None
    share_error: float | None
    stride_ps: float
    means: tuple[np.ndarray, np.ndarray] | None = None  # mean_rows(), once computed

    CHUNK = 16  # origins per piece of the design

    @property
    def first(self) -> np.ndarray:
        return self.species == 0

    def design(self, origins: slice) -> np.ndarray:
        """[o, N, P]: the standardised design of some origins."""
        raw = self.raw[origins].astype(np.float64)
        block = 1 + raw.shape[-1]
        out = np.zeros(raw.shape[:2] + (len(self.scale) * block,))
        for k, (mean, std) in enumerate(self.scale):
            ions = self.species == k
            out[:, ions, k * block] = 1.0
            out[:, ions, k * block + 1:(k + 1) * block] = (raw[:, ions] - mean) / std
        return out

    def pieces(self):
        for start in range(0, self.raw.shape[0], self.CHUNK):
            yield slice(start, start + self.CHUNK)

    def label_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        y = self.labels - self.labels.mean(axis=1, keepdims=True)
        weight = 1.0 / (2.0 * y.var())
        a = b = 0.0
        for part in self.pieces():
            z = self.design(part)
            z = (z - z.mean(axis=1, keepdims=True)).reshape(-1, z.shape[-1])
            a = a + z.T @ z
            b = b + z.T @ y[part].reshape(-1)
        return weight * a, weight * b

    def mean_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(x̄, x̄ of the first species' share): the design's mean over ions and origins, and
        the mean over origins of (1/N) Σ over the first species' ions."""
        if self.means is None:
            n_origins, n = self.raw.shape[:2]
            total = first = 0.0
            for part in self.pieces():
                z = self.design(part)
                total = total + z.sum(axis=(0, 1))
                first = first + z[:, self.first].sum(axis=(0, 1))
            self.means = (total / (n_origins * n), first / (n_origins * n))
        return self.means

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """[O, N]: λ of one parameter vector at every ion and origin."""
        return np.concatenate([self.design(part) @ theta for part in self.pieces()])

    def mean_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        xbar, xfirst = self.mean_rows()
        a = np.outer(xbar, xbar) / self.lam_error**2
        b = xbar * self.lam / self.lam_error**2
        if self.share is not None and self.share_error:
            error = math.hypot(self.share_error * self.lam, self.share * self.lam_error)
            a = a + np.outer(xfirst, xfirst) / error**2
            b = b + xfirst * self.share * self.lam / error**2
        return a, b


def means_from_sums(sums: np.ndarray, species: np.ndarray,
                    scale: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(x̄, x̄ of the first species' share) of :meth:`SystemRows.mean_rows` from per-species
    sums of the raw features over ions, averaged over frames (``sums`` [S, F + F']), for
    ``species`` [N] and the standardisation ``scale``: the design is linear in the raw
    features, so its mean needs only those sums."""
    n = len(species)
    block = sums.shape[1] + 1
    xbar = np.zeros(len(scale) * block)
    for s, (mean, std) in enumerate(scale):
        fraction = float((species == s).sum()) / n
        xbar[s * block] = fraction
        xbar[s * block + 1:(s + 1) * block] = (sums[s] / n - fraction * mean) / std
    xfirst = np.zeros_like(xbar)
    xfirst[:block] = xbar[:block]
    return xbar, xfirst


def pooled_share(*rows: dict | None) -> tuple[float | None, float | None]:
    """The first species' measured share of Λ_EH: inverse-variance mean over independent
    runs of one system (the grid's run, its replicas; rows of the card and replica tables,
    None where a table lacks the system)."""
    values = []
    for row in rows:
        share = cation_share(row or {})
        if share and share.get("stderr"):
            values.append((share["value"], share["stderr"]))
    if not values:
        return None, None
    weight = sum(1 / e**2 for _, e in values)
    return sum(v / e**2 for v, e in values) / weight, 1 / math.sqrt(weight)


class FieldFit:
    def __init__(self, config: FieldConfig, log=print) -> None:
        self.config, self.log = config, log
        paths = sorted({Path(p) for pattern in config.dense for p in glob.glob(pattern)})
        if not paths:
            raise LocalcondError(f"no dense-label records match {config.dense}")
        self.records = read_dense_systems(paths)
        if config.heldout_dense:
            checks = sorted({Path(p) for pattern in config.heldout_dense for p in glob.glob(pattern)})
            if not checks:
                raise LocalcondError(f"no dense-label records match {config.heldout_dense}")
            checked = read_dense_systems(checks)
            if any(r.metadata["role"] != "heldout" for r in checked):
                raise LocalcondError(f"heldout_dense: {[str(r.path) for r in checked if r.metadata['role'] != 'heldout']}"
                                     " are not held-out systems")
            self.records = [r for r in self.records if r.metadata["role"] != "heldout"] + checked
        card = {r["system"]: r for table in config.tables for r in read_json(table, "card table")["systems"]}
        replicas = {r["system"]: r for r in read_json(config.replica_table, "replica table")["systems"]}
        self.more_shares = [{r["system"]: r for r in read_json(t, "replica table")["systems"]}
                            for t in config.share_tables]
        self.species = ["cation", "anion"]
        self.charges = [1.0, -1.0]
        problem = config.dynamics and dynamics_problem(config.dynamics, self.species)
        if problem:
            raise LocalcondError(f"dynamics: {problem}")
        options = {k: v for k, v in config.model.items() if k != "family"}
        self.module, self.template = make_two_scale_model(self.species, self.charges, **options)
        self.card, self.replicas = card, replicas
        self.species_of = {r.metadata["system"]: np.array([self.species.index(n) for n in r.species_names])
                           for r in self.records}  # per system: each ion's species index
        raw = {}
        for record in self.records:
            name = record.metadata["system"]
            if name not in card:
                raise LocalcondError(f"{record.path}: system {name} is not in {', '.join(config.tables)}")
            raw[name] = self._features(record)
        self.roles = {r.metadata["system"]: r.metadata["role"] for r in self.records}
        record_paths = sorted({Path(p) for pattern in config.records for p in glob.glob(pattern)})
        if config.records and not record_paths:
            raise LocalcondError(f"no training records match {config.records}")
        training_records = {}
        for path in record_paths:
            meta = read_record(path)["metadata"]
            if meta["system"] not in card:
                raise LocalcondError(f"{path}: system {meta['system']} is not in {', '.join(config.tables)}")
            training_records[meta["system"]] = path
            self.roles.setdefault(meta["system"], meta["role"])
        names = list(dict.fromkeys(list(raw) + list(training_records)))
        self.excluded = {n: why for n in names if self.roles[n] == "train"
                         and (why := unusable_for_training(card[n])) is not None}
        self.train = [n for n in names if self.roles[n] == "train" and n not in self.excluded]
        self.heldout = [n for n in names if self.roles[n] == "heldout"]
        self._standardise(raw)
        # per system, X of the structure-domain check: per species (1/N) Σ p_i of the ion's own
        # spectrum, averaged over frames (the training record's where there is one)
        f = self.module.n_features
        self.descriptor_means = {n: np.stack([raw[n][:, self._of_species(n, k), :f].astype(np.float64).sum(axis=1)
                                              .mean(axis=0) for k in range(len(self.species))]).reshape(-1)
                                 / raw[n].shape[1] for n in raw}
        self.rows = {r.metadata["system"]: self._rows(r, raw[r.metadata["system"]]) for r in self.records}
        for name, path in training_records.items():
            self._record_rows(name, path)
        self.kinds = self._held_out_kinds()
        masses = config.dynamics.get("masses") or {}
        self.ideal = ({n: ideal_share({s: int((self.rows[n].species == k).sum()) for k, s in enumerate(self.species)},
                                      dict(zip(self.species, self.charges)), masses, self.species[0])
                       for n in self.train} if masses else {})
        self.blocks = {n: (self.rows[n].label_blocks() if self.rows[n].labels is not None else None,
                           self.rows[n].mean_blocks()) for n in self.train}

    # -- data ---------------------------------------------------------------------------------

    def _features(self, record: DenseRecord) -> np.ndarray:
        """[O, N, F + F'] (float32): p and p̄ of every ion at every origin (cached in ``out``,
        by system and number of origins)."""
        n_origins = len(record.time_ps)
        cache = Path(self.config.out) / "features" / f"{record.metadata['system']}.{n_origins}.npy"
        if cache.exists():
            return np.load(cache)
        species = self.species_of[record.metadata["system"]]
        values = np.array([self._frame_features(record.positions(k), record.cell, record.pbc, species)
                           .astype(np.float32) for k in range(n_origins)])
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
            np.save(handle, values)
        self.log(f"features of {record.metadata['system']}: {values.shape[0]} origins")
        return values

    def _frame_features(self, x: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool],
                        species: np.ndarray) -> np.ndarray:
        """[N, F + F']: p and p̄ of every ion of one frame (positions in Å)."""
        ei, ev = periodic_edges(x, cell, pbc, self.module.cutoff)
        with torch.no_grad():
            own, around = self.module.features(torch.as_tensor(species), torch.as_tensor(ei),
                                               torch.as_tensor(ev, dtype=torch.float64), len(species))
        return torch.cat([own, around], dim=1).numpy()

    def _standardise(self, raw: dict[str, np.ndarray]) -> None:
        """Per species, the mean and standard deviation of every feature over the training
        systems' dense origins."""
        self.scale = []
        for k in range(len(self.species)):
            rows = np.concatenate([raw[n][:, self._of_species(n, k)].reshape(-1, raw[n].shape[-1])
                                   for n in self.train if n in raw])
            rows = rows.astype(np.float64)
            std = rows.std(axis=0)
            self.scale.append((rows.mean(axis=0), np.where(std > 0, std, 1.0)))

    def _of_species(self, name: str, k: int) -> np.ndarray:
        return self.species_of[name] == k

    @property
    def n_params(self) -> int:
        return len(self.species) * (1 + self.module.n_features + self.module.n_around)

    def _targets(self, name: str) -> tuple[float, float, float | None, float | None]:
        """Λ, its error covering long lags where the replica table has one, and the pooled share."""
        card = self.card[name]
        check = (self.replicas.get(name) or {}).get("long_lag_check") or {}
        lam = card["molar_conductivity"]
        share, share_error = pooled_share(card, self.replicas.get(name), *(t.get(name) for t in self.more_shares))
        return (float(lam["value"]), float(check.get("total_error") or lam.get("total_error") or lam["stderr"]),
                share, share_error)

    def _rows(self, record: DenseRecord, raw: np.ndarray) -> SystemRows:
        name = record.metadata["system"]
        t1, _ = self.config.label_window_ps
        return SystemRows(name, self.roles[name], record.window_labels(t1), raw, self.species_of[name], self.scale,
                          *self._targets(name), float(record.metadata["stride_ps"]))

    def _record_rows(self, name: str, path: Path) -> None:
        """The system's mean design over its training record's frames: it replaces the
        dense origins' mean (or makes a row of its own, without labels)."""
        record = read_record(path)
        names = [str(n) for n in record["species"]]
        species = np.array([self.species.index(names[k]) for k in record["species_index"]])
        cache = Path(self.config.out) / "features" / f"{name}.record.npy"
        if cache.exists():
            sums = np.load(cache)
        else:
            sums = np.zeros((len(self.species), self.module.n_features + self.module.n_around))
            pbc = tuple(bool(b) for b in record["pbc"])
            for k in range(len(record["time_ps"])):
                both = self._frame_features(positions(record, k), record["cell"], pbc, species)
                for s in range(len(self.species)):
                    sums[s] += both[species == s].sum(axis=0)
            sums /= len(record["time_ps"])
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
                np.save(handle, sums)
            self.log(f"mean features of {name}: {len(record['time_ps'])} frames of its training record")
        xbar, xfirst = means_from_sums(sums, species, self.scale)
        self.descriptor_means[name] = sums[:, :self.module.n_features].reshape(-1) / len(species)
        if name in self.rows:
            self.rows[name].means = (xbar, xfirst)
            return
        self.rows[name] = SystemRows(name, self.roles[name], None, None, species, self.scale, *self._targets(name),
                                     float(record["metadata"].get("origin_stride_ps") or 0.0), means=(xbar, xfirst))

    def _held_out_kinds(self) -> dict[str, str]:
        """Each held-out system's class by ``localcond evaluate``'s rule: interpolation,
        extrapolation (outside the training systems' c, ε or cation sizes) or control
        (other masses)."""
        from localcond.campaign.grid import ions_description, load_grid
        from localcond.campaign.learn.evaluate import classify_held_out

        ions = {spec.name: ions_description(spec) for g in self.config.grids for spec in load_grid(g).systems}
        rows = [{"system": n, "role": "train" if n in self.train else "heldout",
                 "concentration_mol_per_l": self.card[n]["concentration_nominal_mol_per_l"],
                 "dielectric_constant": self.card[n]["dielectric_constant"],
                 **({"ions": ions[n]} if n in ions else {})} for n in self.train + self.heldout]
        classify_held_out(rows)
        return {r["system"]: r["held_out_kind"] for r in rows if "held_out_kind" in r}

    # -- fit ----------------------------------------------------------------------------------

    def _penalty(self, alpha_own: float, alpha_around: float) -> np.ndarray:
        one = np.r_[0.0, np.full(self.module.n_features, alpha_own), np.full(self.module.n_around, alpha_around)]
        return np.diag(np.tile(one, len(self.species)))

    def prior_block(self, name: str, width: float) -> np.ndarray:
        """The share prior of one training system as a block of the normal equations:
        ((x̄_first − t₀ x̄)·θ)² / (w Λ)², the first species' part of Λ_pred minus t₀ times the
        whole, for its ideal share t₀ (:func:`ideal_share`) and the prior's width w in share."""
        row = self.rows[name]
        xbar, xfirst = row.mean_rows()
        v = xfirst - self.ideal[name] * xbar
        return np.outer(v, v) / (width * row.lam) ** 2

    def solve(self, names: list[str], alpha_own: float, alpha_around: float, width: float | None = None) -> np.ndarray:
        a = self._penalty(alpha_own, alpha_around)
        b = np.zeros(self.n_params)
        for n in names:
            labels, (am, bm) = self.blocks[n]
            a, b = a + am, b + bm
            if labels is not None:
                a, b = a + labels[0], b + labels[1]
            if width is not None:
                a = a + self.prior_block(n, width)
        return np.linalg.solve(a, b)

    def leave_one_out(self, alpha_own: float, alpha_around: float, width: float | None = None) -> dict:
        """The left-out training systems' pooled within-system calibration slope, and the χ²
        of their Λ and shares (the left-out system's own share prior left out too)."""
        num = den = 0.0
        chi_lam, chi_share = [], []
        for name in self.train:
            theta = self.solve([m for m in self.train if m != name], alpha_own, alpha_around, width)
            row = self.rows[name]
            labels, _ = self.blocks[name]
            if labels is not None:
                num += float(theta @ labels[1])
                den += float(theta @ labels[0] @ theta)
            xbar, xfirst = row.mean_rows()
            lam = float(xbar @ theta)
            chi_lam.append(((lam - row.lam) / row.lam_error) ** 2)
            if row.share is not None and row.share_error:
                chi_share.append(((float(xfirst @ theta) / lam - row.share) / row.share_error) ** 2)
        return {"alpha_own": alpha_own, "alpha_around": alpha_around, "share_prior_width": width,
                "within_slope": num / den if den > 0 else float("nan"),
                "chi2_lambda": float(np.mean(chi_lam)), "chi2_share": float(np.mean(chi_share))}

    def choose(self) -> tuple[dict, list[dict]]:
        table = [self.leave_one_out(a, b, w) for a, b, w in itertools.product(
            self.config.alphas_own, self.config.alphas_around, self.config.share_prior_widths)]
        for row in table:
            width = row["share_prior_width"]
            self.log(f"alpha_own {row['alpha_own']:g} alpha_around {row['alpha_around']:g} share prior "
                     f"{'none' if width is None else format(width, 'g')}: leave-one-out "
                     f"slope {row['within_slope']:.2f}, chi2 Lambda {row['chi2_lambda']:.2f}, "
                     f"share {row['chi2_share']:.2f}")
        low, high = self.config.slope_range
        calibrated = [r for r in table if low <= r["within_slope"] <= high]
        if calibrated:
            best = min(calibrated, key=lambda r: r["chi2_lambda"] + r["chi2_share"])
        else:
            best = min(table, key=lambda r: abs(r["within_slope"] - 1.0))
            self.log(f"WARNING: no penalties give a leave-one-out slope in [{low:g}, {high:g}]; "
                     f"taking the one closest to 1 ({best['within_slope']:.2f})")
        for key, values in (("alpha_own", self.config.alphas_own), ("alpha_around", self.config.alphas_around),
                            ("share_prior_width", [w for w in self.config.share_prior_widths if w is not None])):
            if len(values) > 1 and best[key] in (min(values), max(values)):
                self.log(f"WARNING: {key} {best[key]:g} is at the edge of the values tried; extend the grid")
        return best, table

    def members(self, alpha_own: float, alpha_around: float, width: float | None = None) -> np.ndarray:
        """[n, P]: jackknife members whose mean is the fit to all training systems."""
        n = len(self.train)
        full = self.solve(self.train, alpha_own, alpha_around, width)
        thetas = np.array([self.solve([m for m in self.train if m != name], alpha_own, alpha_around, width)
                           for name in self.train])
        return full + (n - 1) / math.sqrt(n) * (thetas - thetas.mean(axis=0))

    def raw_weights(self, thetas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardised parameters → bias [K, S], W [K, S, F], U [K, S, F'] on raw features
        (F' = the module's n_around)."""
        f = self.module.n_features
        block = 1 + f + self.module.n_around
        k = thetas.shape[0]
        bias = np.zeros((k, len(self.species)))
        own = np.zeros((k, len(self.species), f))
        around = np.zeros((k, len(self.species), self.module.n_around))
        for s, (mean, std) in enumerate(self.scale):
            part = thetas[:, s * block:(s + 1) * block]
            weights = part[:, 1:] / std
            bias[:, s] = part[:, 0] - weights @ mean
            own[:, s], around[:, s] = weights[:, :f], weights[:, f:]
        return torch.as_tensor(bias), torch.as_tensor(own), torch.as_tensor(around)

    # -- checks -------------------------------------------------------------------------------

    def check(self, name: str, thetas: np.ndarray) -> dict:
        """Λ_pred (the mean over the system's frames), and on its dense labels, where it has
        them, the first species' share and the calibration."""
        row = self.rows[name]
        theta = thetas.mean(axis=0)
        xbar, xfirst = row.mean_rows()
        lam = float(xbar @ theta)
        members = thetas @ xbar  # linear: each member's mean over ions and frames
        kind = self.kinds.get(name, "interpolation")
        if row.labels is not None:
            pred = row.predict(theta)  # [O, N]
            share = float(pred[:, row.first].sum() / pred.sum())
            t1, t2 = self.config.label_window_ps
            cal = calibration(pred, row.labels, row.stride_ps, t2)
            field_rows = {"slope": cal["slope"], "slope_stderr": cal["slope_stderr"], "intercept": cal["intercept"],
                          "lambda_std": float(pred.std()), "n_origins": int(pred.shape[0])}
        else:
            share = float(xfirst @ theta) / lam
            field_rows = {"slope": None, "slope_stderr": None, "intercept": None, "lambda_std": None,
                          "n_origins": 0}
        out = {"system": name, "role": row.role, "kind": kind,
               "lambda_pred": lam, "lambda_pred_spread": float(members.std(ddof=1)) if len(members) > 1 else 0.0,
               "lambda": row.lam, "lambda_error": row.lam_error,
               "z_lambda": (lam - row.lam) / row.lam_error, "relative_error": lam / row.lam - 1.0,
               "share": share, "share_measured": row.share, "share_error": row.share_error,
               "z_share": (share - row.share) / row.share_error if row.share and row.share_error else None,
               **field_rows}
        limit = HELD_OUT_LIMITS.get(kind)
        out["passes"] = {"lambda": None if limit is None else bool(abs(out["z_lambda"]) <= 2
                                                                   and abs(out["relative_error"]) <= limit),
                         "share": out["z_share"] is not None and abs(out["z_share"]) <= 2,
                         "calibration": None if out["slope"] is None else SLOPE_RANGE[0] <= out["slope"] <= SLOPE_RANGE[1]}
        return out

    # -- export -------------------------------------------------------------------------------

    def run(self, command: str) -> Path:
        best, table = self.choose()
        thetas = self.members(best["alpha_own"], best["alpha_around"], best["share_prior_width"])
        checks = [self.check(n, thetas) for n in self.heldout]
        for c in checks:
            self.log(describe_check(c))
        options = {k: v for k, v in self.config.model.items() if k != "family"}
        torch.manual_seed(0)  # the spectrum's readout layers, which the two-scale model never calls, are
        # initialised at random: a fixed seed makes the exported file the same on every run
        module, _ = make_two_scale_model(self.species, self.charges, members=len(thetas), **options)
        module.set_weights(*self.raw_weights(thetas))
        t1, t2 = self.config.label_window_ps
        spread = {}
        for n in self.train:
            values = thetas @ self.rows[n].mean_rows()[0]  # each member's Λ_pred: the fit is linear
            spread[n] = {"members": values.tolist(), "std": float(np.std(values, ddof=1)), "lambda": self.rows[n].lam}
        domain = descriptor_domain(np.array([self.descriptor_means[n] for n in self.train]), self.train)
        domain["feature"] = ("X = per species s, (1/N) sum over the ions i of s of p_i (p the ion's own spectrum within "
                             "the inner cutoff, the model's descriptors; N all evaluated ions), averaged over frames")
        share_ok = bool(checks) and all(c["passes"]["share"] for c in checks)
        validation = {"species_share": {"validated": share_ok, "held_out": [
            {k: c[k] for k in ("system", "share", "share_measured", "share_error", "z_share")} for c in checks],
            "rule": "first species' share of Lambda_pred within 2 sigma of the measured share of Lambda_EH "
                    "(every independent run in the card, replica and share tables, inverse-variance pooled) "
                    "on every held-out system"}} if checks else {}
        metadata = ModelMetadata(
            species=tuple(self.species), charges=tuple(self.charges), cutoff=self.template.cutoff,
            n_layers=self.template.n_layers, inner_cutoff=self.template.inner_cutoff, dtype=self.template.dtype,
            kind=f"ensemble/{self.template.kind}",
            description=(f"{len(thetas)}-member jackknife of a two-scale linear field fitted to per-ion labels "
                         f"over [{t1:g}, {t2:g}] ps, the Lambda and species shares of {len(self.train)} systems"),
            trained=True, temperature_k=self._temperature(), label_tau_ps=float(t1),
            training_systems=tuple(self.train),
            training={"mode": "field", "solver": "field", "label": f"per-ion, slope form over [{t1:g}, {t2:g}] ps",
                      "label_form": "slope", "label_window_ps": [t1, t2],
                      "supervision": ["per-ion labels (within-frame contrasts)", "system Lambda (long-lag errors)",
                                      "first species' share of Lambda_EH (every independent run in the card, replica and share "
                                      "tables, inverse-variance pooled)"]
                      + ([f"prior: first species' share of Lambda_pred around the ideal share "
                          f"{sorted(set(round(v, 6) for v in self.ideal.values()))} (uncorrelated ions, Langevin "
                          f"D0 proportional to 1/m), width {best['share_prior_width']:g}"]
                         if best["share_prior_width"] is not None else []),
                      "penalties": best, "leave_one_out": table, "excluded": self.excluded,
                      "members": [{"left_out": n} for n in self.train], "ensemble_spread": spread, "domain": domain,
                      **({"dynamics": self.config.dynamics} if self.config.dynamics else {}),
                      "held_out_checks": checks, "config": asdict(self.config), "command": command,
                      "localcond_version": __version__},
            validation=validation)
        path = Path(self.config.out) / "model.pt"
        save_model(module, metadata, path)
        return path

    def _temperature(self) -> float | None:
        temperatures = {r.metadata.get("temperature_k") for r in self.records}
        return float(temperatures.pop()) if len(temperatures) == 1 else None


def describe_check(c: dict) -> str:
    """One held-out check in a line."""
    share = (f"share {c['share']:.3f} against {c['share_measured']:.3f} +- {c['share_error']:.3f} (z {c['z_share']:+.1f})"
             if c["z_share"] is not None else f"share {c['share']:.3f} (none measured)")
    slope = (f"calibration slope {c['slope']:.2f} +- {c['slope_stderr']:.2f} ({c['n_origins']} origins)"
             if c["slope"] is not None else "no dense labels")
    return (f"held-out {c['system']} ({c['kind']}): Lambda_pred {c['lambda_pred']:.0f} against {c['lambda']:.0f} +- "
            f"{c['lambda_error']:.0f} (z {c['z_lambda']:+.1f}, {100 * c['relative_error']:+.1f} %); {share}; {slope}; "
            f"passes {c['passes']}")


def train_field(config_path: str | Path, log=print) -> Path:
    config = load_field_config(config_path)
    return FieldFit(config, log).run("localcond train " + str(config_path))
