#!/usr/bin/env bash
# Train config.toml on the GPUs of this machine: one process per GPU ({{ cookiecutter._scaffold.launch.parallelism }} as
# planned; config.toml's train.parallel picks FSDP when the model states are sharded).
#   scripts/launch_torchrun.sh                            # {{ cookiecutter._scaffold.plan.devices }} GPUs, as planned
#   NPROC=4 DATA=data/own scripts/launch_torchrun.sh --set train.max_steps=100
#   scripts/launch_torchrun.sh --resume                   # continue runs/main (make resume)
#   DRY_RUN=1 scripts/launch_torchrun.sh                  # print the command line only
# The plan's batch_size and grad_accum are per GPU: fewer GPUs, fewer tokens per step.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC="${NPROC:-{{ cookiecutter._scaffold.plan.devices }}}"
DATA="${DATA:-{{ cookiecutter._scaffold.data.out }}}"
RUN="${RUN:-runs/main}"
if [ "${1:-}" = "--resume" ]; then
    # the run folder holds its config and data path; resume on as many GPUs as it
    # trained on, or the global batch (per-GPU batch x GPUs) would change
    shift
    set -- train --resume --out "$RUN" "$@"
else
    if [ ! -f "$DATA/meta.json" ]; then
        echo "error: $DATA/meta.json not found; run \`make data\` first" >&2
        exit 2
    fi
    set -- train --config config.toml --data "$DATA" --out "$RUN" "$@"
fi
command=(.venv/bin/torchrun --standalone --nproc_per_node "$NPROC"
         -m {{ cookiecutter.package_name }} "$@")
if [ -n "${DRY_RUN:-}" ]; then  # print the command line instead of running it
    echo "${command[*]}"
    exit 0
fi
exec "${command[@]}"
