"""Closed-form system-level fit of a linear readout on fixed descriptors.

For a model λ_i = c + W_{s_i} · p_i (p_i the descriptor of ion i, s_i its species,
one weight vector per species, one intercept), the mean over the N ions of a frame is

    mean_i λ_i = c + Σ_s W_s · X_s,    X_s = (1/N) Σ_{i of species s} p_i,

linear in the weights. Averaged over a system's frames, X = (X_s)_s is the system's
feature vector, and the ``system`` objective of :mod:`localcond.campaign.learn.train`,
Σ_s [(mean f − Λ_s)/σ_s]², becomes weighted least squares in (c, W), solved exactly
with a ridge penalty:

    minimise  Σ_s ω_s (c + w · z_s − Λ_s)² + α |w|²,   z = (X − m) / d,

with m, d the mean and standard deviation of each column of X over the training
systems (columns without spread get d = 1 and carry no information), and
ω_s = (1/σ_s²) / mean(1/σ²). On standardised columns, α is scale-free: both terms
are in units of Λ². The intercept is not penalised. α is chosen by leave-one-system-
out prediction (the χ² of the left-out systems, mean of ((Λ̂ − Λ)/σ)²) over a grid.
Mapping back, W = w / d and c = b − Σ_j w_j m_j / d_j, so the exported model
computes λ_i from the raw descriptors with no standardisation.

Uncertainty (:func:`jackknife_members`): the n fits that each leave one training
system out, θ_j, give the jackknife standard error of any prediction,
SE² = (n−1)/n Σ_j (P_j − P̄)². Since predictions are linear in θ = (c, W), the
members θ̃_j = θ_all + (n−1)/√n (θ_j − θ̄) have exactly the fit to all systems as
their mean and that SE as their standard deviation (ddof 1) for every prediction:
an ensemble whose forward is the model and whose spread is its uncertainty from
the finite set of training systems. (Bootstrap resamples were tried first: each
drops about a third of the systems, and their mean predicted left-out systems
worse, 12.9 % against 9.5 % on the 16 systems of 2026-11-28.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localcond.engine.domain import spread_distance

DEFAULT_ALPHAS = tuple(float(10.0 ** e) for e in np.arange(-4.0, 3.01, 0.5))


@dataclass
class LinearFit:
    intercept: float  # c, S cm² mol⁻¹
    weights: np.ndarray  # W flattened species-major [S·F], S cm² mol⁻¹ per descriptor unit


def system_features(species: list[np.ndarray], descriptors: list[np.ndarray], n_species: int) -> np.ndarray:
    """X of one system: per frame (1/N) Σ_{i of species s} p_i for each species, averaged
    over frames; ``species`` int [N] and ``descriptors`` [N, F] per frame. Returns [S·F]."""
    rows = []
    for s_of, p in zip(species, descriptors):
        n, f = p.shape
        x = np.zeros((n_species, f))
        np.add.at(x, s_of, p)
        rows.append(x.reshape(-1) / n)
    return np.mean(rows, axis=0)


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def fit_ridge(x: np.ndarray, lam: np.ndarray, sigma: np.ndarray, alpha: float,
              counts: np.ndarray | None = None, scaling: tuple[np.ndarray, np.ndarray] | None = None) -> LinearFit:
    """The ridge solution (module docstring) for systems' features ``x`` [n, S·F], Λ ``lam``
    [n] with errors ``sigma`` [n]; ``counts`` [n] repeats systems (a bootstrap resample);
    ``scaling`` (m, d) defaults to the columns' own mean and spread."""
    counts = np.ones(len(lam)) if counts is None else np.asarray(counts, dtype=float)
    mean, std = scaling if scaling is not None else standardise(x)
    z = (x - mean) / std
    omega = 1.0 / sigma**2
    omega = counts * omega / np.mean(omega)
    a = np.c_[np.ones(len(lam)), z]
    penalty = alpha * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(a.T @ (omega[:, None] * a) + penalty, a.T @ (omega * lam))
    weights = coef[1:] / std
    return LinearFit(float(coef[0] - weights @ mean), weights)


def predict(fit: LinearFit, x: np.ndarray) -> np.ndarray:
    return fit.intercept + x @ fit.weights


def leave_one_out(x: np.ndarray, lam: np.ndarray, sigma: np.ndarray, alpha: float) -> np.ndarray:
    """Each system's Λ predicted by the fit to the others (their own standardisation)."""
    out = np.empty(len(lam))
    for k in range(len(lam)):
        keep = np.arange(len(lam)) != k
        out[k] = predict(fit_ridge(x[keep], lam[keep], sigma[keep], alpha), x[k:k + 1])[0]
    return out


def choose_alpha(x: np.ndarray, lam: np.ndarray, sigma: np.ndarray,
                 alphas: tuple[float, ...] | list[float] = DEFAULT_ALPHAS) -> tuple[float, list[dict]]:
    """α with the smallest leave-one-system-out χ²; and the table of every α tried."""
    if len(lam) < 3:
        raise ValueError(f"choosing the ridge penalty by leave-one-out needs at least 3 systems, got {len(lam)}")
    table = []
    for alpha in alphas:
        pred = leave_one_out(x, lam, sigma, alpha)
        table.append({"alpha": float(alpha), "loo_chi2": float(np.mean(((pred - lam) / sigma) ** 2)),
                      "loo_mean_abs_relative_error": float(np.mean(np.abs(pred / lam - 1.0)))})
    best = min(table, key=lambda row: row["loo_chi2"])
    return best["alpha"], table


def edge_warning(alpha: float, alphas: tuple[float, ...] | list[float]) -> str | None:
    """A warning when the chosen α is the smallest or largest of the grid: the χ² may
    fall further beyond it, so the penalty is the grid's choice, not the data's."""
    lo, hi = min(alphas), max(alphas)
    if len(alphas) > 1 and alpha in (lo, hi):
        side = "largest" if alpha == hi else "smallest"
        return (f"WARNING: ridge alpha {alpha:.3g} is the {side} of the penalties tried ({lo:.3g}-{hi:.3g}): "
                "the leave-one-system-out chi2 may fall further beyond it; extend 'alphas' in the config")
    return None


def jackknife_members(x: np.ndarray, lam: np.ndarray, sigma: np.ndarray, alpha: float) -> list[LinearFit]:
    """n members (module docstring): mean = the fit to all systems, standard deviation =
    the jackknife standard error, for every prediction. One standardisation (all systems')
    for every fit, so that their parameters are comparable."""
    n = len(lam)
    if n < 2:
        raise ValueError("a jackknife needs at least 2 systems")
    scaling = standardise(x)
    full = fit_ridge(x, lam, sigma, alpha, scaling=scaling)
    theta_all = np.r_[full.intercept, full.weights]
    thetas = []
    for k in range(n):
        keep = np.arange(n) != k
        fit = fit_ridge(x[keep], lam[keep], sigma[keep], alpha, scaling=scaling)
        thetas.append(np.r_[fit.intercept, fit.weights])
    thetas = np.array(thetas)
    members = theta_all + (n - 1) / np.sqrt(n) * (thetas - thetas.mean(axis=0))
    return [LinearFit(float(t[0]), t[1:]) for t in members]


DOMAIN_MARGIN = 2.0  # outside: farther than this times the farthest training system left out


def descriptor_domain(x: np.ndarray, names: list[str]) -> dict:
    """The training systems' features X [n, S·F] as a domain: their mean and standard
    deviation per feature (columns without spread get 1, as :func:`standardise` gives), each
    system's distance from the others when it is left out (:func:`spread_distance`, the
    statistics of the other n − 1), and the threshold: DOMAIN_MARGIN times the largest of
    those. A run whose mean X lies farther is outside what the model was trained on."""
    if len(x) < 3:
        raise ValueError("a descriptor domain needs at least 3 training systems")
    loo = {}
    for k, name in enumerate(names):
        others = np.delete(x, k, axis=0)
        loo[name] = float(spread_distance(x[k], *standardise(others)))
    mean, std = standardise(x)
    return {"feature": "X = per species s, (1/N) sum over the ions i of s of p_i (p the model's descriptors, "
                       "N all evaluated ions), averaged over frames: the features the ridge fit reads",
            "distance": "root-mean-square over features of (X - mean) / std",
            "mean": mean.tolist(), "std": std.tolist(), "leave_one_out_distance": loo,
            "margin": DOMAIN_MARGIN, "threshold": DOMAIN_MARGIN * max(loo.values())}
