#!/usr/bin/env bash
# Continue a data campaign in the background, on both cores, from what git holds:
#
#   bash scripts/continue_campaign.sh grid       # the training grid (training/grid.json); systems whose
#                                                # production failed the diffusive check are replanned once
#   bash scripts/continue_campaign.sh replicas   # fresh replicas with dense labels (training/replicas.json)
#   bash scripts/continue_campaign.sh sizes      # the ion-size family (training/grid_sizes.json)
#   JOBS=1 bash scripts/continue_campaign.sh …   # on one core, leaving the other free
#   tail -f runs/<campaign>/<campaign>.log        # watch
#   git add training/progress training/data training/systems.json training/replica_systems.json \
#       && git commit -m "Campaign progress"      # now and then
#
# It runs from a snapshot of HEAD (a git worktree under runs/<campaign>/code), so editing the
# source while it runs changes nothing under it. Trajectories go to runs/<campaign>/data (scratch;
# the committed progress is what a new machine resumes from). A second call says it is running.
set -euo pipefail
CAMPAIGN="${1:-}"
case "$CAMPAIGN" in
    grid) ARGS=(generate training/grid.json --table training/systems.json --replan-failed) ;;
    replicas) ARGS=(replicas training/replicas.json --table training/replica_systems.json
                    --card-table training/systems.json) ;;
    sizes) ARGS=(generate training/grid_sizes.json --table training/systems_sizes.json --replan-failed) ;;
    *) echo "usage: bash scripts/continue_campaign.sh grid|replicas|sizes" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
RUN="$ROOT/runs/$CAMPAIGN"
mkdir -p "$RUN"
if pgrep -f "localcond ${ARGS[0]} .*runs/$CAMPAIGN/code" >/dev/null; then
    echo "[$CAMPAIGN] already running; log: $RUN/$CAMPAIGN.log"
    exit 0
fi
git -C "$ROOT" worktree remove --force "$RUN/code" 2>/dev/null || rm -rf "$RUN/code"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --detach "$RUN/code" HEAD >/dev/null
echo "[$CAMPAIGN] running from commit $(git -C "$RUN/code" rev-parse --short HEAD); log: $RUN/$CAMPAIGN.log"
cd "$ROOT"
# the spec file from the snapshot; tables, progress and records in the working tree (committed from there)
SPEC="$RUN/code/${ARGS[1]}"
PYTHONPATH="$RUN/code/python" nohup "$VENV/bin/python" -m localcond "${ARGS[0]}" "$SPEC" "${ARGS[@]:2}" \
    --data-dir "$RUN/data" --progress-dir "$ROOT/training/progress" --records-dir "$ROOT/training/data" \
    --jobs "${JOBS:-2}" >> "$RUN/$CAMPAIGN.log" 2>&1 &
echo "[$CAMPAIGN] started (pid $!)"
