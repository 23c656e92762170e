#!/usr/bin/env bash
# From an empty experiment to a promoted production model, the way a GPU box's cron job
# or CI would do it. Uses only heimdall's -q/--json outputs: no table parsing.
#
# Usage:
#   scripts/pipeline.sh [extra heimdall train arguments…]
# Environment (all optional):
#   HEIMDALL_CONFIG     config file for every command (default: configs/default.yaml)
#   RUN_NAME            MLflow run name (default: pipeline-<UTC timestamp>)
#   MAX_VAL_LOSS        promotion gate on the run's best/val_loss (default: 10.0)
#   MLFLOW_TRACKING_URI, AWS_*, HEIMDALL_*: the usual heimdall configuration
# Exit code: the first failing heimdall command's (see README "Exit codes").
set -euo pipefail

export HEIMDALL_CONFIG=${HEIMDALL_CONFIG:-configs/default.yaml}
run_name=${RUN_NAME:-pipeline-$(date -u +%Y%m%dT%H%M%SZ)}
max_val_loss=${MAX_VAL_LOSS:-10.0}
heimdall=${HEIMDALL:-heimdall}

log() { printf '%s pipeline: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

log "verify ($HEIMDALL_CONFIG)"
"$heimdall" verify --json > /dev/null

log "train $run_name"
run_id=$("$heimdall" train --run-name "$run_name" --progress plain --json "$@" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["run_id"])')
log "trained run $run_id"

best=$("$heimdall" runs best --metric val/loss --status FINISHED -q)
log "best finished run by val/loss: $best"

version=$("$heimdall" model register --run-id "$best" -q)
log "registered version $version"

"$heimdall" model promote --version "$version" --stage Production \
  --require "metrics.best/val_loss < $max_val_loss" -q > /dev/null
log "version $version is now production"
printf '%s\n' "$version"
