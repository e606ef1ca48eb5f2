"""The two-stage plan of a grid system (doc/design.md §1, training/README.md): pilot
segments fix, once and for all, the slope-form window and the production length;
their data enter no reported number, so the length cannot bias Λ or its error.
A system whose production fails the diffusive check may be replanned once."""

from __future__ import annotations

import json
import math

from localcond.campaign.labels.windows import candidate_starts, frames_to_ps
from localcond.campaign.segments import Segments
from localcond.errors import LocalcondError
from localcond.io.files import write_json


def trend_resolution(windows: list[dict], window_ps: list[float], up_to_ps: float) -> float:
    """The largest relative standard error of Λ(window) − Λ(w) over the longer windows
    w = [t', 2t'] with t' ≤ ``up_to_ps`` (independent errors assumed: conservative
    for overlapping windows, whose difference varies less). A trend of this relative
    size would be a 1σ effect; infinite when no longer window was measured."""
    own = next(w for w in windows if list(w["tau_window_ps"]) == list(window_ps))
    worst = math.inf
    for w in windows:
        start = w["tau_window_ps"][0]
        if start <= window_ps[0] or start > up_to_ps + 1e-9:
            continue
        rel = math.hypot(own["stderr"], w["stderr"]) / abs(own["value"])
        worst = rel if worst == math.inf else max(worst, rel)
    return worst


class Planner:
    """The plan of one system (``plan.json`` in its progress directory)."""

    def __init__(self, segments: Segments) -> None:
        self.segments = segments
        self.grid, self.system, self.log = segments.grid, segments.system, segments.log
        self.progress = segments.progress

    def pilot(self, n: int) -> tuple[dict, bool]:
        """The window rule on pilot segments 0 … n−1 (5 blocks of n sub-blocks each, so
        lags up to n × 125 ps for 2.5 ns segments) and whether its choice is final:
        a passing window [t, 2t] is final when the two octaves above it, up to 8t, were
        tested precisely enough to see a trend as large as the role's statistical target
        (:func:`trend_resolution`), or when the pilot has its maximum length."""
        result = self.segments.analysis([self.segments.load(k) for k in range(n)], merge=n)
        if result.get("window_rule") is None:
            raise LocalcondError(f"{self.system.name}: the pilot supports fewer than two windows")
        longest = self.grid.longest_lag_ps(n)
        t1 = result["tau_window_ps"][0]
        target = self.grid.target_statistical_error[self.system.role]
        settled = (result["window_check_passed"] and 8 * t1 <= longest + 1e-9
                   and trend_resolution(result["windows"], result["tau_window_ps"], 8 * t1) <= target)
        return result, settled or n >= self.grid.max_pilot_segments

    def plan(self) -> dict:
        path = self.progress / "plan.json"
        if path.exists():
            return json.loads(path.read_text())
        grid = self.grid
        n_pilot = 1
        while True:
            for k in range(n_pilot):
                self.segments.ensure(k, None)
            pilot, final = self.pilot(n_pilot)
            if final:
                break
            self.log(f"  {self.system.name}: pilot of {n_pilot} segment(s) cannot settle the window "
                     f"(rule: {pilot['tau_window_ps']} ps, passed {pilot['window_check_passed']}): "
                     f"extending it to {2 * n_pilot}")
            n_pilot = min(2 * n_pilot, grid.max_pilot_segments)
        plan = self._plan_from_pilot(pilot, n_pilot, f"chosen by the window rule on a pilot of {n_pilot} segment(s)")
        write_json(path, plan)
        return plan

    def replanned(self) -> bool:
        """Whether the committed plan is already a second stage (``replan``)."""
        path = self.progress / "plan.json"
        return path.exists() and bool(json.loads(path.read_text()).get("replan_of"))

    def replan(self) -> dict:
        """Second stage, once, for a system whose production failed the diffusive check:
        every segment so far (pilot and failed production) becomes the pilot of a new
        plan (window by the rule, production length from its error, as in the first
        stage), and a fresh production continues the trajectory. The earlier data enter
        no reported number, so the new length cannot bias Λ either."""
        path = self.progress / "plan.json"
        old = json.loads(path.read_text())
        if old.get("replan_of"):
            raise LocalcondError(f"{self.system.name}: replanned once already; not again")
        n_pilot = old["pilot_segments"] + old["production_segments"]
        pilot, _ = self.pilot(n_pilot)
        plan = self._plan_from_pilot(
            pilot, n_pilot, f"replanned after the production failed the diffusive check: the window rule on "
            f"all {n_pilot} earlier segments (pilot and failed production)")
        plan["replan_of"] = {k: v for k, v in old.items() if k != "pilot"}
        plan["rule"] += "; replanned once after a failed diffusive check, all earlier segments as the pilot"
        write_json(path, plan)
        self.log(f"  {self.system.name}: replanned after its failed diffusive check")
        return plan

    def _plan_from_pilot(self, pilot: dict, n_pilot: int, how: str) -> dict:
        grid, role = self.grid, self.system.role
        rows = pilot["windows"]
        # the production (one block per segment) checks a window against longer ones up to its
        # own longest lag: a longer pilot (a replan) may not choose beyond that
        starts = candidate_starts(grid.frame_ps, grid.longest_lag_ps(grid.sub_blocks))
        reachable = pilot["window_check_passed"] and \
            pilot["tau_window_ps"][0] <= frames_to_ps((starts[-2],), grid.frame_ps)[0] + 1e-9
        if reachable:
            window_ps = tuple(pilot["tau_window_ps"])
            row = next(r for r in rows if r["tau_window_ps"] == list(window_ps))
            rel = row["stderr"] / abs(row["value"])
        else:
            # No window passes even on the longest pilot: take the longest production
            # window that still has a longer one to be checked against, and scale the
            # error of the pilot's nearest window (∝ √τ2) to it.
            window_ps = tuple(frames_to_ps((starts[-2], 2 * starts[-2]), grid.frame_ps))
            row = min(rows, key=lambda r: abs(r["tau_window_ps"][0] - window_ps[0]))
            rel = row["stderr"] / abs(row["value"]) * math.sqrt(window_ps[1] / row["tau_window_ps"][1])
            why = "no window passed" if not pilot["window_check_passed"] else \
                f"the rule's window {pilot['tau_window_ps']} ps lies beyond what the production can check"
            how = (f"{how}: {why} (lags up to {grid.longest_lag_ps(n_pilot):g} ps); the longest "
                   "production window with a longer one to check it against")
        window_frames = [int(round(t / grid.frame_ps)) for t in window_ps]
        target = grid.target_statistical_error[role]
        wanted = math.ceil(n_pilot * (rel / target) ** 2)  # error ∝ 1/√length
        longest = int(grid.max_production_ps[role] // grid.segment_ps)
        n = min(max(wanted, grid.min_production_segments), longest)
        production_ps = n * grid.segment_ps
        stride_ps = max(grid.label_min_stride_ps, production_ps / grid.label_max_origins)
        stride_frames = int(math.ceil(stride_ps / grid.frame_ps))
        plan = {
            "system": self.system.name, "role": role,
            "rule": ("two-stage: pilot segments (1, doubled up to "
                     f"{grid.max_pilot_segments} while the window rule cannot settle, i.e. until its window "
                     "[t, 2t] passes against windows up to 8t, each difference resolved to the target; "
                     "not used in any "
                     "reported number) fix the window and the production length "
                     f"ceil(pilot segments x (pilot relative error / {target:g})^2) segments of "
                     f"{grid.segment_ps:g} ps, clamped to [{grid.min_production_segments}, {longest}]"),
            "window_ps": list(window_ps), "window_frames": window_frames, "window_choice": how,
            "pilot_segments": n_pilot,
            "pilot": {"relative_error": rel, "window_passed": bool(reachable),
                      "critical_z": pilot["critical_z"], "longest_lag_ps": grid.longest_lag_ps(n_pilot),
                      "windows": rows},
            "production_segments": n, "wanted_segments": wanted,
            "expected_relative_error": rel * math.sqrt(n_pilot / max(n, 1)),
            "stride_frames": stride_frames, "stride_ps": stride_frames * grid.frame_ps,
            "label_radii_A": list(grid.label_radii_a),
        }
        if wanted > longest:
            plan["warning"] = (f"the pilot asks for {wanted} production segments, more than the "
                               f"{longest} affordable: the statistical target will be missed")
        self.log(f"  {self.system.name}: plan: window {window_ps[0]:g}-{window_ps[1]:g} ps, "
                 f"pilot {n_pilot} segment(s) with error {rel:.1%}, {n} production segments "
                 f"({production_ps / 1000:g} ns)")
        return plan

    def production(self, plan: dict) -> range:
        first = plan["pilot_segments"]
        return range(first, first + plan["production_segments"])

