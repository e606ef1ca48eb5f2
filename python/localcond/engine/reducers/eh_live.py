"""Einstein–Helfand and Nernst–Einstein conductivity during a run, from the
ions' unwrapped positions (Å) and charges (e) at each evaluation.

Two reducers on the same lags (a multiple-tau ladder, :mod:`localcond.engine.reducers.ladder`:
every lag up to 8 evaluations, then 4 per octave up to ``nlags``):

* :class:`CollectiveDisplacement` — ΔM_s = M_s(t+τ) − M_s(t), M_s = Σ_{i∈s} q_i r_i,
  exact at every lag with origins at every evaluation, from a ring of the last
  nlags+1 values of M (S×3 numbers each). Per block of ``block`` consecutive
  origins and lag it sums n, |ΔM|² and ΔM_s·ΔM. M is global (all-reduced), so
  every MPI rank holds the same sums: a replicated reducer.
* :class:`SelfDisplacement` — per lag and species the number of ion-origin
  pairs and Σ q_i²|Δr_i|², over the ions a rank follows (exact displacements;
  origins every 2^level evaluations at the ladder's coarser levels). The sum is
  formed as Σ q²|c(t)|² + Σ q²|c(t−τ)|² − 2 Σ q² c(t)·c(t−τ), c = r − o for a
  constant o per history (the stored sums of squares, and one matrix product per
  level): its rounding is about 1e-16 |c|²/|Δr|² relative, 1e-8 for a 1000 Å
  spread and 0.1 Å displacements.

:func:`eh_curves` turns them into Λ_EH(τ) ± its error over blocks, Λ_NE(τ)
and the species shares ⟨ΔM_s·ΔM⟩/⟨|ΔM|²⟩, in S cm² mol⁻¹ (:mod:`localcond.units`):

    Λ_EH = N_A e² ⟨|ΔM|²⟩ / (6 k_B T τ n_salt),   Λ_NE the same with Σ_i q_i²⟨|Δr_i|²⟩.
"""

from __future__ import annotations

import math

import numpy as np

from localcond.engine.reducers.base import Reducer
from localcond.engine.reducers.ladder import P_DEFAULT, Ladder, LadderHistory
from localcond.engine.reducers.tracked import IonHistoryReducer, TrackedIons
from localcond.units import molar_conductivity_prefactor


class CollectiveDisplacement(Reducer):
    kind = "eh_collective"

    def __init__(self, nlags: int, n_species: int, block: int, p: int = P_DEFAULT) -> None:
        if nlags < 1 or block < 1:
            raise ValueError(f"Einstein-Helfand needs nlags >= 1 and block >= 1, got {nlags}, {block}")
        self.nlags, self.n_species, self.block, self.p = int(nlags), int(n_species), int(block), int(p)
        self.ladder = Ladder(self.nlags, p)
        self.m_ring = np.zeros((self.nlags + 1, n_species, 3))
        self.k = 0  # evaluations in the current history
        self.start = 0  # evaluations in earlier histories (origins are numbered across histories)
        self.sums = np.zeros((0, self.ladder.lags.size, 2 + n_species))  # [block, lag, (n, |dM|^2, dM_s.dM)]

    def restart(self) -> None:
        self.start += self.k
        self.k = 0

    def update(self, m_species: np.ndarray) -> None:
        """One evaluation's M_s = Σ_{i∈s} q_i r_i [S, 3] (e Å, all ions)."""
        depth = self.nlags + 1
        self.m_ring[self.k % depth] = m_species
        ready = int(np.searchsorted(self.ladder.lags, self.k, side="right"))  # lags are ascending
        if ready:
            lags = self.ladder.lags[:ready]
            dm_s = m_species[None] - self.m_ring[(self.k - lags) % depth]  # [L, S, 3]
            dm = dm_s.sum(axis=1)
            blocks = (self.start + self.k - lags) // self.block
            grow = int(blocks[0]) + 1 - self.sums.shape[0]  # the shortest lag has the latest origin
            if grow > 0:
                self.sums = np.concatenate([self.sums, np.zeros((grow,) + self.sums.shape[1:])])
            values = np.empty((ready, 2 + self.n_species))
            values[:, 0] = 1.0
            values[:, 1] = np.einsum("lx,lx->l", dm, dm)
            values[:, 2:] = np.einsum("lsx,lx->ls", dm_s, dm)
            self.sums[blocks, np.arange(ready)] += values  # (block, lag) pairs are distinct within one update
        self.k += 1

    def merge(self, other: "CollectiveDisplacement") -> None:
        """Add another run's sums (block by block)."""
        if (self.nlags, self.n_species, self.block, self.p) != (other.nlags, other.n_species, other.block, other.p):
            raise ValueError("cannot merge Einstein-Helfand reducers with different settings")
        n = max(self.sums.shape[0], other.sums.shape[0])
        pad = lambda a: np.concatenate([a, np.zeros((n - a.shape[0],) + a.shape[1:])])  # noqa: E731
        self.sums = pad(self.sums) + pad(other.sums)

    def for_rank(self, rank: int, size: int) -> "CollectiveDisplacement":
        return self.copy()  # replicated: every rank holds it whole

    def state(self) -> dict[str, np.ndarray]:
        return {"settings": np.array([self.nlags, self.n_species, self.block, self.p, self.k, self.start]),
                "m_ring": self.m_ring, "sums": self.sums}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "CollectiveDisplacement":
        nlags, n_species, block, p, k, start = (int(v) for v in state["settings"])
        out = cls(nlags, n_species, block, p)
        out.k, out.start = k, start
        out.m_ring = np.array(state["m_ring"], dtype=float).reshape(out.m_ring.shape)
        out.sums = np.array(state["sums"], dtype=float).reshape((-1,) + out.sums.shape[1:])
        return out


class SelfDisplacement(IonHistoryReducer):
    kind = "eh_self"
    dim = 3  # followed per ion: its unwrapped position

    def __init__(self, nlags: int, n_species: int, p: int = P_DEFAULT) -> None:
        self.nlags, self.n_species, self.p = int(nlags), int(n_species), int(p)
        self.ladder = Ladder(self.nlags, p)
        self.sums = np.zeros((self.ladder.lags.size, 2, n_species))  # [lag, (pairs, q^2 |dr|^2), s]
        self.ions = TrackedIons(self.ladder, self.dim)  # positions; charges as the history's constants
        # per history: o, and the weights q_i^2 per species row, each repeated for x, y, z
        # [S, 3n] (flat, contiguous layouts: numpy is slow on a trailing axis of 3), the
        # same times o, and Σ_i q_i^2 |c_i|^2 per species of every stored evaluation [level, slot, S]
        self._for: LadderHistory | None = None
        self._origin = np.zeros(3)
        self._origins = np.zeros(0)
        self._weights = np.zeros((n_species, 0))
        self._shifts = np.zeros((n_species, 0))
        self._squares = np.zeros((0, 0, n_species))

    def restart(self) -> None:
        self.ions.restart()

    def _squares_of(self, history: LadderHistory, now: np.ndarray) -> np.ndarray:
        """The sums of squares of ``history``'s stored evaluations, rebuilt from its
        ring when it is not the history they were kept for (a new history, a
        restored or merged one)."""
        if self._for is not history:
            self._for = history
            n = now.shape[0]
            self._origin = np.round(now.mean(axis=0)) if n else np.zeros(3)
            self._origins = np.tile(self._origin, n)
            per_ion = self.ions.indicator(self.n_species) * (self.ions.constants**2)[:, None]  # [n, S]
            self._weights = np.ascontiguousarray(np.repeat(per_ion, 3, axis=0).T)  # [S, 3n]
            self._shifts = self._weights * self._origins[None, :]
            c = history.ring.reshape(history.ring.shape[:2] + (3 * n,)) - self._origins
            self._squares = (c * c) @ self._weights.T
        return self._squares

    def check_step(self, ids: np.ndarray, positions: np.ndarray, limit: float, step: int) -> None:
        """Refuse positions [n, 3] (Å) in which an ion moved more than ``limit`` (half the
        box's smallest periodic width) since the last evaluation: such a step cannot be
        told from a wrapped coordinate read without image flags (rerun of a dump of
        ``x y z`` alone), which makes Λ_EH tens of times too large."""
        atom, length = self.ions.largest_step(ids, positions)
        if length > limit:
            raise ValueError(
                f"atom ID {atom} moved {length:.3g} A between two evaluations (up to step {step}), more than "
                f"half the box's smallest periodic width ({limit:.3g} A): its coordinates jumped across the "
                "box, as wrapped coordinates without image flags do (rerun of a dump with 'x y z' alone?). "
                "The live Einstein-Helfand estimate needs unwrapped positions: dump 'xu yu zu' or "
                "'x y z ix iy iz' and read those fields in rerun, or evaluate often enough that no ion "
                "travels half the box between evaluations")

    def update(self, ids: np.ndarray, species: np.ndarray, charges: np.ndarray, positions: np.ndarray) -> None:
        """The followed ions' unwrapped positions [n, 3] (Å) and charges (e; fixed
        for a history: the fix checks them against the model's species charges)."""
        now, pairs = self.ions.push(ids, species, positions, constants=charges)
        history = self.ions.history
        assert history is not None
        squares = self._squares_of(history, now)
        c = now.reshape(-1) - self._origins  # [3n]
        weighted = self._weights * c[None, :]  # [S, 3n]
        now_squares = weighted @ c  # [S]
        for level, slot in history.written:
            squares[level, slot] = now_squares
        if not pairs:
            return
        counts = self.ions.species_counts(self.n_species)
        shift = self._shifts @ c  # [S]: Σ_i q_i^2 o·c_i, as the past values are not shifted
        for index, past, level, slots in pairs:
            cross = past.reshape(past.shape[0], -1) @ weighted.T - shift[None, :]  # [J, S]
            block = np.empty((index.size, 2, self.n_species))  # [J, (pairs, q^2 |dr|^2), S]
            block[:, 0] = counts[None, :]
            block[:, 1] = now_squares[None, :] + squares[level, slots] - 2.0 * cross
            self.sums[index] += block  # lag positions are distinct within one update



def eh_curves(collective: CollectiveDisplacement, self_part: SelfDisplacement | None, interval_ps: float,
              temperature_k: float, n_salt: float, ions_per_species: np.ndarray) -> dict[str, np.ndarray]:
    """Λ_EH(τ) with its standard error over chunks of origins (:func:`_chunk_error`), Λ_NE(τ) and the
    species shares of Λ_EH at the ladder's lags τ = lag × ``interval_ps``.
    Without ``self_part``, Λ_NE is NaN."""
    prefactor = molar_conductivity_prefactor(temperature_k, n_salt)
    tau = collective.ladder.lags * interval_ps
    blocks = collective.sums
    total = blocks.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(total[:, 0] > 0, total[:, 0], np.nan)
        m2, cross = total[:, 1] / n, total[:, 2:] / n[:, None]
        lags = collective.ladder.lags
        counts = np.zeros(tau.size, dtype=int)
        err = np.full(tau.size, np.nan)
        for j in range(tau.size):
            counts[j], err[j] = _chunk_error(blocks[:, j, 0], blocks[:, j, 1], int(lags[j]), collective.block)
        err *= prefactor / tau
        self_q2 = np.full(tau.size, np.nan)
        if self_part is not None:
            own = self_part.sums
            per_pair = own[:, 1] / own[:, 0]  # ⟨q²|Δr|²⟩ per ion of species s
            self_q2 = np.nansum(per_pair * np.asarray(ions_per_species, dtype=float)[None, :], axis=1)
            self_q2 = np.where(own[:, 0].sum(axis=1) > 0, self_q2, np.nan)
        return {"tau_ps": tau, "lambda_eh": prefactor * m2 / tau, "stderr": err,
                "lambda_ne": prefactor * self_q2 / tau, "share": cross / m2[:, None],
                "error_chunks": counts, "origins": total[:, 0]}


# A chunk of origins spans at least this many lags, so that chunks are nearly independent;
# an error needs at least MIN_CHUNKS of them (the scatter of 2 or 3 values is itself too noisy:
# on 40 ps runs, 2 chunks gave 1113 +- 62 where the long run's Lambda is 1792).
CHUNK_SPAN_IN_LAGS = 2
MIN_CHUNKS = 4


def _chunk_error(n: np.ndarray, m2: np.ndarray, lag: int, block: int) -> tuple[int, float]:
    """(number of chunks, standard error of ⟨|ΔM|²⟩) at one lag, from the blocks of origins
    with data there (counts ``n``, sums ``m2``) grouped into chunks of
    g = ⌈CHUNK_SPAN_IN_LAGS · lag / block⌉ consecutive blocks (NaN below MIN_CHUNKS chunks).

    Displacements over a lag τ from origins less than τ apart share part of their path.
    So blocks of origins shorter than the lag are correlated, and their scatter
    understates the error. On random walks the understatement is 0.49 × the true
    scatter for blocks of 0.2 τ. It is 0.91 × for chunks of 2 τ, and 0.95 × for
    4 τ (400 replicas, 2000 origins, τ = 100). Each chunk's value is Σ m2 / Σ n over
    its blocks; blocks left over after the last whole chunk enter the mean, not the
    error."""
    chunks = merged_blocks(np.flatnonzero(n > 0), CHUNK_SPAN_IN_LAGS * lag, block)
    k = chunks.shape[0]
    if k < MIN_CHUNKS:
        return k, float("nan")
    values = m2[chunks].sum(axis=1) / n[chunks].sum(axis=1)
    return k, float(values.std(ddof=1) / np.sqrt(k))


def merged_blocks(have: np.ndarray, span: float, block: int) -> np.ndarray:
    """[k, g]: the blocks of origins with data (their indices ``have``, in time order)
    in consecutive groups of g = ⌈``span`` / ``block``⌉ (both in evaluations), so that
    each group spans at least ``span``; the k whole groups only (the rest is left out).
    The one merge rule of the live error (:func:`_chunk_error`) and of the post-run
    windows (:func:`localcond.postrun.runs.window_blocks`), which differ in span."""
    g = max(1, math.ceil(span / block))
    k = have.size // g
    return have[: k * g].reshape(k, g)
