"""Which evaluations enter which statistics, and where a history of
evaluations breaks. The rules (the live path's contract with its users):

1. **Instantaneous statistics** (moments, histogram, spatial correlation, the
   running Λ_pred) count each configuration once: every evaluation a run makes
   at its own steps (``phase="run"``), and the setup evaluation of a run only
   when nothing has been counted yet (later setups re-evaluate the
   configuration the previous run ended on, or one a minimization or a
   command between runs produced).
2. **Time correlations** (λ autocorrelation, Einstein–Helfand) pair two
   evaluations only inside one *history*: evaluations on the N-step grid
   (step mod N = 0), evenly spaced in steps with the same timestep, with no
   minimization or step reset between them. Every lag is the actual time
   between its two evaluations, Δstep × dt. An evaluation off the grid (the
   setup after a minimization ending at step 26, after a run of 105 steps)
   never enters; a break (the step going back, a gap, a new timestep, a
   minimization) starts a new history and says why.
3. The time unit of the lags, ``interval_ps`` = spacing × dt, is fixed by the
   first history that reaches two evaluations. A later history with another
   interval cannot add to lags counted in the first, and is refused with an
   error rather than mixed in.

Times are in ps; ``dt_ps`` None means the caller has no clock (the lags then
count evaluations, interval 1).
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("run", "setup")


@dataclass(frozen=True)
class Evaluation:
    step: int
    dt_ps: float | None  # ps per step
    nevery: int  # the evaluation grid, in steps
    phase: str  # "run": a step of a run; "setup": the evaluation before a run's first step
    moved: str | None = None  # why the atoms may have moved outside dynamics since the last call


@dataclass(frozen=True)
class Decision:
    count: bool  # enters the instantaneous statistics
    correlate: bool  # enters the time correlations
    restart: bool  # ... as the first evaluation of a new history
    duplicate: bool  # the history's last evaluation again (same step): check the atoms did not move
    note: str | None = None  # why a history ended, for the log


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


class Timeline:
    def __init__(self) -> None:
        self.last_counted: int | None = None  # step of the last counted evaluation
        self.step: int | None = None  # last evaluation of the current history
        self.dt_ps: float | None = None
        self.spacing: int | None = None  # steps between the history's evaluations
        self.interval_ps: float | None = None  # time unit of all accumulated lags
        self.broken: str | None = None  # a break seen since the history's last evaluation

    def decide(self, ev: Evaluation) -> Decision:
        if ev.phase not in PHASES:
            raise ValueError(f"unknown evaluation phase {ev.phase!r}")
        if ev.nevery < 1:
            raise ValueError(f"the evaluation grid must be >= 1 step, got {ev.nevery}")
        if ev.moved and self.step is not None:
            self.broken = ev.moved
        count = ev.step != self.last_counted and (ev.phase == "run" or self.last_counted is None)
        if count:
            self.last_counted = ev.step
        if ev.step % ev.nevery:
            return Decision(count, False, False, False)
        if self.step is None:
            return self._start(ev, count, None)
        if ev.step == self.step and _same(ev.dt_ps, self.dt_ps) and self.broken is None:
            return Decision(count, False, False, True)
        reason = self.broken
        delta = ev.step - self.step
        if reason is None and not _same(ev.dt_ps, self.dt_ps):
            reason = f"the timestep changed from {self._fs(self.dt_ps)} to {self._fs(ev.dt_ps)}"
        if reason is None and delta <= 0:
            reason = f"the step went back from {self.step} to {ev.step} (reset_timestep, or a rerun)"
        if reason is None and self.spacing is not None and delta != self.spacing:
            reason = (f"{delta} steps passed since the last evaluation on the grid (step {self.step}), "
                      f"not {self.spacing}")
        if reason is not None:
            return self._start(ev, count, f"time correlations: new history at step {ev.step}: {reason}")
        if self.spacing is None:
            self._fix_interval(delta, ev)
            self.spacing = delta
        self.step = ev.step
        return Decision(count, True, False, False)

    def restart_here(self, ev: Evaluation, count: bool, reason: str) -> Decision:
        """Start a new history at ``ev`` (the caller found the atoms moved)."""
        return self._start(ev, count, f"time correlations: new history at step {ev.step}: {reason}")

    def _fix_interval(self, delta: int, ev: Evaluation) -> None:
        interval = delta * ev.dt_ps if ev.dt_ps is not None else float(delta)
        if self.interval_ps is None:
            self.interval_ps = interval
        elif not _same(interval, self.interval_ps):
            unit = "ps" if ev.dt_ps is not None else "evaluations"
            raise ValueError(
                f"the time between evaluations is now {interval:.6g} {unit} ({delta} steps), but the time "
                f"correlations were accumulated at lags of {self.interval_ps:.6g} {unit}; they cannot be mixed. "
                "Keep N x timestep unchanged, or define the fix anew (a new fix ID) for new statistics")

    def _start(self, ev: Evaluation, count: bool, note: str | None) -> Decision:
        self.step, self.dt_ps, self.spacing, self.broken = ev.step, ev.dt_ps, None, None
        return Decision(count, True, True, False, note)

    @staticmethod
    def _fs(dt_ps: float | None) -> str:
        return "none" if dt_ps is None else f"{dt_ps * 1000:.6g} fs"

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ("last_counted", "step", "dt_ps", "spacing", "interval_ps", "broken")}

    @classmethod
    def from_state(cls, state: dict) -> "Timeline":
        out = cls()
        for key, value in state.items():
            setattr(out, key, value)
        return out
