#!/usr/bin/env bash
# Submit a GPU training run to a multi-node Ray cluster whose nodes advertise the custom resources
# rollout_node (GPU inference nodes) and learner_node (GPU training nodes): deploy/cluster-launcher.yaml,
# or nodes started by hand with `ray start ... --resources '{"rollout_node": 1}'`. Needs a shared
# filesystem at /mnt/rlsys on every node (run dir, checkpoints, model cache).
# Usage: RAY_ADDRESS=http://HEAD:8265 deploy/submit_cluster.sh [more section.key=value overrides]
# The token is $RAY_AUTH_TOKEN, else this machine's `ray get-auth-token` (the one copied to the cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
RAY="${RAY:-$(command -v ray || echo .venv/bin/ray)}"
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-$("$RAY" get-auth-token)}"
exec "$RAY" job submit --working-dir . -- \
    rlsys train configs/smollm2_gsm.yaml \
    rollout.num_workers=2 rollout.num_gpus_per_worker=1 rollout.num_cpus_per_worker=2 \
    'rollout.resources={rollout_node: 1}' rollout.gpu_memory_utilization=0.85 rollout.samples_per_prompt=8 \
    learner.num_ranks=4 learner.num_gpus_per_rank=1 learner.num_cpus_per_rank=4 \
    'learner.resources={learner_node: 1}' learner.placement=pack \
    reward.num_actors=1 reward.num_workers=2 \
    data.prompts_per_step=16 data.num_train=4096 data.num_eval=64 \
    model.cache_dir=/mnt/rlsys/cache trainer.run_dir=/mnt/rlsys/runs/smollm2-gsm \
    trainer.total_steps=100 trainer.save_every=20 trainer.eval_every=25 \
    "$@"
