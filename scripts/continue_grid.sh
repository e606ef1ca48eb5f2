#!/usr/bin/env bash
# Continue the training grid in the background from what git holds
# (training/progress/, training/systems.json), on both cores; systems whose
# production failed the diffusive check are replanned once (--replan-failed):
#
#   bash scripts/continue_grid.sh            # start (or say it is already running)
#   tail -f runs/grid/generate.log           # watch
#   git add training/progress training/data training/systems.json && git commit -m "Grid progress"
#
# The generator runs from a snapshot of HEAD (a git worktree under runs/grid/code),
# so editing the source while it runs changes nothing under it. Trajectories go to
# runs/grid/data (scratch; the committed progress is what a new machine resumes from).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
RUN="$ROOT/runs/grid"
mkdir -p "$RUN"
if pgrep -f "localcond generate .*runs/grid/code" >/dev/null; then
    echo "[grid] already running; log: $RUN/generate.log"
    exit 0
fi
git -C "$ROOT" worktree remove --force "$RUN/code" 2>/dev/null || rm -rf "$RUN/code"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --detach "$RUN/code" HEAD >/dev/null
echo "[grid] generating from commit $(git -C "$RUN/code" rev-parse --short HEAD); log: $RUN/generate.log"
cd "$ROOT"
PYTHONPATH="$RUN/code/python" nohup "$VENV/bin/python" -m localcond generate "$RUN/code/training/grid.json" \
    --data-dir "$RUN/data" --table "$ROOT/training/systems.json" \
    --progress-dir "$ROOT/training/progress" --records-dir "$ROOT/training/data" --jobs 2 --replan-failed \
    >> "$RUN/generate.log" 2>&1 &
echo "[grid] started (pid $!)"
