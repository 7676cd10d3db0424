#!/usr/bin/env bash
# Start a single-node Ray cluster (head) on this machine for `ray job submit`, with Ray's token
# authentication left on. Prints the exports a client needs. Usage: deploy/start_local_cluster.sh [NUM_CPUS]
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_CPUS="${1:-8}"
RAY=.venv/bin/ray
export PATH="$PWD/.venv/bin:$PATH"   # job entrypoints (`rlsys train ...`) find the console script
export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}" VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
"$RAY" get-auth-token --generate >/dev/null           # creates ~/.ray/auth_token once
"$RAY" start --head --node-ip-address 127.0.0.1 --num-cpus "$NUM_CPUS" --dashboard-host 127.0.0.1 \
    --dashboard-port 8265 --disable-usage-stats
echo
echo "export RAY_ADDRESS=http://127.0.0.1:8265"
echo "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=\$($RAY get-auth-token)"
