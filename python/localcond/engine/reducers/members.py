"""Each ensemble member's Λ_pred, whence the model uncertainty of Λ_pred.

An ensemble model (:func:`localcond.engine.runtime.n_members`) gives every ion one
λ per member; its λ is their mean. Fed each counted evaluation's group mean of λ
per member, this reducer holds Λ_pred,k = the mean over evaluations of member k's
group mean (S cm² mol⁻¹): their mean is Λ_pred itself, and their standard deviation
(ddof 1) is the model uncertainty of Λ_pred. For the jackknife ensembles that
``localcond train`` makes with the ridge and field solvers, the members are scaled
so that this standard deviation is the jackknife standard error from the finite set
of training systems (:mod:`localcond.campaign.learn.ridge`); for ensembles of
independently trained members it is their spread. It is not a statistical error of
the run, and it does not cover what no member knows (a system outside the training
domain).
"""

from __future__ import annotations

import numpy as np

from localcond.engine.reducers.base import Reducer, zeroed_like


class MemberMeans(Reducer):
    kind = "member_means"

    def __init__(self, n_members: int) -> None:
        if n_members < 2:
            raise ValueError(f"an ensemble has at least 2 members, got {n_members}")
        self.count = np.zeros(1)  # evaluations
        self.sums = np.zeros(n_members)  # Σ over evaluations of each member's group mean

    def update(self, group_means: np.ndarray) -> None:
        """One evaluation: each member's mean of λ over the group's ions [k]."""
        group_means = np.asarray(group_means, dtype=float)
        if group_means.shape != self.sums.shape:
            raise ValueError(f"expected {self.sums.size} members' means, got shape {group_means.shape}")
        self.count += 1.0
        self.sums += group_means

    def member_lambda(self) -> np.ndarray:
        """Λ_pred of each member (NaN before the first evaluation)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.count[0] if self.count[0] > 0 else np.full(self.sums.shape, np.nan)

    def uncertainty(self) -> float:
        """The members' standard deviation (ddof 1) of Λ_pred (module docstring)."""
        values = self.member_lambda()
        return float(np.std(values, ddof=1)) if np.all(np.isfinite(values)) else float("nan")

    def merge(self, other: "MemberMeans") -> None:
        if other.sums.shape != self.sums.shape:
            raise ValueError("cannot merge the means of ensembles of different sizes")
        self.count = self.count + other.count
        self.sums = self.sums + other.sums

    def for_rank(self, rank: int, size: int) -> "MemberMeans":
        return self.copy() if rank == 0 else zeroed_like(self, ("count", "sums"))

    def state(self) -> dict[str, np.ndarray]:
        return {"count": self.count, "sums": self.sums}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "MemberMeans":
        out = cls(len(state["sums"]))
        out.count, out.sums = np.array(state["count"], dtype=float), np.array(state["sums"], dtype=float)
        return out
