#!/usr/bin/env bash
# Train config.toml on the GPUs of this machine: one process per GPU, data parallel.
#   scripts/launch_torchrun.sh                            # {{ cookiecutter._scaffold.plan.devices }} GPUs, as planned
#   NPROC=4 DATA=data/own scripts/launch_torchrun.sh --set train.max_steps=100
# The plan's batch_size and grad_accum are per GPU: fewer GPUs, fewer tokens per step.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC="${NPROC:-{{ cookiecutter._scaffold.plan.devices }}}"
DATA="${DATA:-data/stdlib}"
RUN="${RUN:-runs/main}"
if [ ! -f "$DATA/meta.json" ]; then
    echo "error: $DATA/meta.json not found; run \`make prepare\` first" >&2
    exit 2
fi
exec .venv/bin/torchrun --standalone --nproc_per_node "$NPROC" \
    -m {{ cookiecutter.package_name }} train --config config.toml --data "$DATA" --out "$RUN" "$@"
