#!/usr/bin/env bash
# Continue the replica set (training/replicas.json: fresh independent replicas of every
# grid system with dense per-ion labels) in the background from what git holds:
#
#   bash scripts/continue_replicas.sh        # start (or say it is already running)
#   tail -f runs/replicas/replicas.log       # watch
#   git add training/progress/implicit-v2-replica training/data/implicit-v2-replica \
#       training/replica_systems.json && git commit -m "Replicas progress"   # now and then
#
# Like scripts/continue_grid.sh, it runs from a snapshot of HEAD (a git worktree under
# runs/replicas/code); trajectories go to runs/replicas/data (scratch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
RUN="$ROOT/runs/replicas"
mkdir -p "$RUN"
if pgrep -f "localcond replicas .*runs/replicas/code" >/dev/null; then
    echo "[replicas] already running; log: $RUN/replicas.log"
    exit 0
fi
git -C "$ROOT" worktree remove --force "$RUN/code" 2>/dev/null || rm -rf "$RUN/code"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --detach "$RUN/code" HEAD >/dev/null
echo "[replicas] running from commit $(git -C "$RUN/code" rev-parse --short HEAD); log: $RUN/replicas.log"
cd "$ROOT"
PYTHONPATH="$RUN/code/python" nohup "$VENV/bin/python" -m localcond replicas "$RUN/code/training/replicas.json" \
    --data-dir "$RUN/data" --table "$ROOT/training/replica_systems.json" --card-table "$ROOT/training/systems.json" \
    --progress-dir "$ROOT/training/progress" --records-dir "$ROOT/training/data" --jobs "${JOBS:-2}" \
    >> "$RUN/replicas.log" 2>&1 &
echo "[replicas] started (pid $!)"
