#!/usr/bin/env bash
# Submit the demo as a Ray job to the cluster at $RAY_ADDRESS (default the local head started by
# deploy/start_local_cluster.sh). Extra arguments are config overrides, e.g. algo=aer trainer.total_steps=5.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-$(.venv/bin/ray get-auth-token)}"
exec .venv/bin/ray job submit --working-dir . -- \
    rlsys train configs/demo.yaml model.cache_dir="$HOME/.cache/rlsys" "$@"
