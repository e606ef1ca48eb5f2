"""Einstein–Helfand conductivity during a run, from unwrapped positions at
every evaluation (time origins at every evaluation, lags 1 … nlags evaluations).

Per lag ℓ it accumulates, over origins, per block of ``block`` consecutive
origins:

    collective   n, Σ|ΔM|², Σ ΔM_s·ΔM (per species)      ΔM = Σ_j q_j Δr_j over all ions
    self         Σ_{i∈s} q_i²|Δr_i|², Σ_{i∈s} |Δr_i|²       over the ions this rank owns

The collective sums are the same on every rank (ΔM is all-reduced) and are
not added when ranks merge; the self sums are split by ion ownership (atom ID
modulo the number of ranks) and add. Values pool all origins, as
``localcond conductivity`` does, so both agree to round-off on the same frames.
"""

from __future__ import annotations

import numpy as np

from localcond.reduce.store import Reducer


class LiveEinsteinHelfand(Reducer):
    kind = "einstein_helfand"

    def __init__(self, nlags: int, n_species: int, block: int) -> None:
        if nlags < 1 or block < 1:
            raise ValueError(f"Einstein-Helfand needs nlags >= 1 and block >= 1, got {nlags}, {block}")
        self.nlags, self.n_species, self.block = int(nlags), int(n_species), int(block)
        self.seen = 0  # evaluations so far
        self.m_history = np.zeros((nlags + 1, n_species, 3))  # M_s at the last evaluations
        self.collective = np.zeros((0, nlags, 2 + n_species))  # [block, lag, (n, |dM|^2, dM_s.dM)]
        self.self_sums = np.zeros((0, nlags, 2, n_species))  # [block, lag, (q^2 dr^2, dr^2), s]
        self.ids = np.zeros(0, dtype=np.int64)
        self.species = np.zeros(0, dtype=np.int64)
        self.charges = np.zeros(0)
        self.positions = np.zeros((0, nlags + 1, 3))  # per owned ion, ring over evaluations

    def _ensure_blocks(self, n_blocks: int) -> None:
        grow = n_blocks - self.collective.shape[0]
        if grow > 0:
            self.collective = np.concatenate([self.collective, np.zeros((grow,) + self.collective.shape[1:])])
            self.self_sums = np.concatenate([self.self_sums, np.zeros((grow,) + self.self_sums.shape[1:])])

    def update(self, m_species: np.ndarray, ids: np.ndarray, species: np.ndarray, charges: np.ndarray,
               positions: np.ndarray) -> None:
        """One evaluation: the global M_s = Σ_{i∈s} q_i r_i [S, 3] and the owned ions'
        unwrapped positions (Å)."""
        k, depth = self.seen, self.nlags + 1
        ids = np.asarray(ids, dtype=np.int64)
        new = np.setdiff1d(ids, self.ids)
        if new.size and k > 0:
            raise ValueError("the set of ions changed during the run")
        if new.size:
            order = np.argsort(ids)
            self.ids = ids[order]
            self.species = np.asarray(species, dtype=np.int64)[order]
            self.charges = np.asarray(charges, dtype=float)[order]
            self.positions = np.zeros((len(ids), depth, 3))
        rows = np.searchsorted(self.ids, ids)
        if rows.size != self.ids.size:
            raise ValueError("the set of ions changed during the run")
        slot = k % depth
        self.m_history[slot] = m_species
        self.positions[rows, slot] = positions
        lags = np.arange(1, min(k, self.nlags) + 1)
        if lags.size:
            past = (k - lags) % depth
            blocks = (k - lags) // self.block  # block of the origin
            self._ensure_blocks(int(blocks.max()) + 1)
            dm_s = m_species[None] - self.m_history[past]  # [L, S, 3]
            dm = dm_s.sum(axis=1)
            np.add.at(self.collective, (blocks, lags - 1, 0), 1.0)
            np.add.at(self.collective, (blocks, lags - 1, 1), np.einsum("lx,lx->l", dm, dm))
            for s in range(self.n_species):
                np.add.at(self.collective, (blocks, lags - 1, 2 + s), np.einsum("lx,lx->l", dm_s[:, s], dm))
            dr = self.positions[:, slot][:, None, :] - self.positions[:, past]  # [n, L, 3]
            sq = np.einsum("nlx,nlx->nl", dr, dr)
            onehot = np.eye(self.n_species)[self.species]  # [n, S]
            q2 = self.charges**2
            np.add.at(self.self_sums, (blocks, lags - 1, 0), (sq * q2[:, None]).T @ onehot)
            np.add.at(self.self_sums, (blocks, lags - 1, 1), sq.T @ onehot)
        self.seen += 1

    def merge(self, other: "LiveEinsteinHelfand") -> None:
        """Combine ranks: self sums add, collective sums (identical) are kept."""
        if (self.nlags, self.n_species, self.block) != (other.nlags, other.n_species, other.block):
            raise ValueError("cannot merge Einstein-Helfand reducers with different settings")
        n = max(self.self_sums.shape[0], other.self_sums.shape[0])
        self._ensure_blocks(n)
        other_sums = other.self_sums
        if other_sums.shape[0] < n:
            other_sums = np.concatenate([other_sums, np.zeros((n - other_sums.shape[0],) + other_sums.shape[1:])])
        self.self_sums = self.self_sums + other_sums
        if other.collective.shape[0] > self.collective.shape[0]:
            self.collective = other.collective.copy()
        ids = np.concatenate([self.ids, other.ids])
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.species = np.concatenate([self.species, other.species])[order]
        self.charges = np.concatenate([self.charges, other.charges])[order]
        self.positions = np.concatenate([self.positions, other.positions])[order]

    def pooled(self) -> dict[str, np.ndarray]:
        """Means over all origins per lag: |dM|^2, dM_s.dM, Σ q²|dr|² and Σ |dr|² per species."""
        c = self.collective.sum(axis=0)
        s = self.self_sums.sum(axis=0)
        n = np.where(c[:, 0] > 0, c[:, 0], np.nan)
        return {"count": c[:, 0], "m2": c[:, 1] / n, "cross": c[:, 2:] / n[:, None],
                "self_q2": s[:, 0] / n[:, None], "self_sq": s[:, 1] / n[:, None]}

    def block_means(self) -> dict[str, np.ndarray]:
        """The same per block [B, lag, ...] (NaN where a block has no origin)."""
        n = np.where(self.collective[..., 0] > 0, self.collective[..., 0], np.nan)
        return {"m2": self.collective[..., 1] / n, "cross": self.collective[..., 2:] / n[..., None],
                "self_q2": self.self_sums[:, :, 0] / n[..., None]}

    def state(self) -> dict[str, np.ndarray]:
        return {"settings": np.array([self.nlags, self.n_species, self.block, self.seen]),
                "m_history": self.m_history, "collective": self.collective, "self_sums": self.self_sums,
                "ids": self.ids, "species": self.species, "charges": self.charges,
                "positions": self.positions}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "LiveEinsteinHelfand":
        nlags, n_species, block, seen = (int(v) for v in state["settings"])
        out = cls(nlags, n_species, block)
        out.seen = seen
        out.m_history = np.array(state["m_history"], dtype=float)
        out.collective = np.array(state["collective"], dtype=float).reshape(-1, nlags, 2 + n_species)
        out.self_sums = np.array(state["self_sums"], dtype=float).reshape(-1, nlags, 2, n_species)
        out.ids = np.array(state["ids"], dtype=np.int64)
        out.species = np.array(state["species"], dtype=np.int64)
        out.charges = np.array(state["charges"], dtype=float)
        out.positions = np.array(state["positions"], dtype=float).reshape(-1, nlags + 1, 3)
        return out
