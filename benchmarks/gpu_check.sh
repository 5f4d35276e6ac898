#!/usr/bin/env bash
# The GPU paths no CPU can run, checked in one go on a machine with a CUDA GPU:
#
#   bench-train    ours vs HF transformers' GPT-2, bf16 + torch.compile, MFU of both
#   trainer        the trainer on GPT-2 small's shape: bf16, compile, chunked loss, MFU
#   fp16           float16 + GradScaler: an injected NaN gradient, a spike skipped,
#                  a spike rolled back; each run goes on to its last step
#   sdpa           the flash kernel serves the training shapes (MHA and GQA, forward
#                  and backward); fp32 GQA avoids the math kernel
#   torchrun       torchrun (NCCL with 2+ GPUs), SIGTERM mid-run: a checkpoint at the
#                  step boundary, exit 143, then --resume to the end
#   fsdp-compile   (2+ GPUs) FSDP2 with bf16 and compile, resumed from a DDP checkpoint
#   generate       sampling on the GPU from the torchrun run
#   bench-serve    the serving benchmark on the GPU
#
# Each check prints PASS or FAIL and its numbers; details go to WORK_DIR/NAME.log.
# Exit status: 0 if all passed, 1 if any failed, 2 if there is no CUDA GPU. Nothing
# needs the network: the data is this Python's standard library and the HF peer is
# built from a config.
#
#   bash benchmarks/gpu_check.sh [WORK_DIR]        (default: a new temporary folder)
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh

set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY=${PYTHON:-python}
FAILED=0

# --- helpers ---------------------------------------------------------------------

# check NAME FUNCTION: run FUNCTION LOG; its stdout is the summary, the rest the log
check() {
    local name=$1 fn=$2 log=$WORK/$1.log summary
    local start=$SECONDS
    if summary=$("$fn" "$log" 2>>"$log"); then
        echo "PASS $name ($((SECONDS - start)) s): $summary"
    else
        echo "FAIL $name ($((SECONDS - start)) s): ${summary:-see $log}"
        tail -n 8 "$log" | sed 's/^/    /'
        FAILED=$((FAILED + 1))
    fi
}

# train ARGS...: the tiny preset on this data, on the GPU
train() {
    "$PY" -m llm_reference train --preset tiny --data "$DATA" \
        --set 'train.device="cuda"' "$@"
}

# events RUN: "event@step" of a run's metrics.jsonl, space-separated
events() {
    "$PY" - "$1/metrics.jsonl" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
print(" ".join(f"{r['event']}@{r['step']}" for r in records if "event" in r))
EOF
}

# last_step RUN: the last step logged
last_step() {
    "$PY" -c "import json, sys; print(max(json.loads(l)['step'] for l in open(sys.argv[1])))" \
        "$1/metrics.jsonl"
}

# --- the checks ------------------------------------------------------------------

bench_train() {
    "$PY" benchmarks/train.py --quick --shape gpt2-124m --dtype bfloat16 --compile \
        --device cuda >"$1" 2>&1 || return 1
    grep -q "MFU" "$1" || { echo "no MFU printed: GPU not in the catalog?"; return 1; }
    grep -E "^(ours|peer|ratio)" "$1" | tr -s ' ' | paste -sd ';' -
}

trainer() {
    local run=$WORK/gpt2 breaks
    TORCH_LOGS=graph_breaks "$PY" -m llm_reference train --preset gpt2-124m \
        --data "$DATA" --out "$run" --max-steps 30 --set train.batch_size=8 \
        --set train.grad_accum=1 --set train.warmup_steps=5 \
        --set train.eval_interval=30 --set train.eval_steps=2 \
        --set train.checkpoint_interval=30 >"$1" 2>&1 || return 1
    breaks=$(grep -c "__graph_breaks" "$1")
    (( breaks == 0 )) || { echo "$breaks graph-break log lines: see $1"; return 1; }
    "$PY" - "$run/metrics.jsonl" <<'EOF'
import json, statistics, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if "event" not in r]
mfu = statistics.median(r["mfu"] for r in steps[1:])
rate = statistics.median(r["tokens_per_s"] for r in steps[1:])
print(f"step 1 (compile) {steps[0]['warmup_s']:.1f} s; then {rate:,.0f} tokens/s, "
      f"MFU {mfu:.1%}; val loss {steps[-1]['val_loss']:.3f}")
sys.exit(0 if mfu >= 0.10 else 1)  # compiled bf16 GPT-2 small: well above 10 %
EOF
}

fp16() {
    local skip=$WORK/fp16-skip back=$WORK/fp16-rollback found
    train --out "$skip" --max-steps 80 --set 'train.dtype="float16"' \
        --set train.inject_nan_at=20 --set train.inject_spike_at=60 \
        --set train.inject_spike_scale=5.0 --set train.spike_warmup=30 >"$1" 2>&1 \
        || return 1
    found=$(events "$skip")
    [[ $(last_step "$skip") == 80 && $found == *fp16_overflow@20* \
       && ($found == *skip@60* || $found == *fp16_overflow@60*) ]] \
        || { echo "skip run: events '$found'"; return 1; }
    train --out "$back" --max-steps 80 --set 'train.dtype="float16"' \
        --set 'train.anomaly_action="rollback"' --set train.checkpoint_interval=40 \
        --set train.inject_spike_at=60 --set train.inject_spike_scale=5.0 \
        --set train.spike_warmup=30 >>"$1" 2>&1 || return 1
    local rolled
    rolled=$(events "$back")
    [[ $(last_step "$back") == 80 ]] || { echo "rollback run: '$rolled'"; return 1; }
    echo "skip run: $found; rollback run: ${rolled:-none (the spike overflowed)}"
}

sdpa() {
    "$PY" - >"$1" 2>&1 <<'EOF' || return 1
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from llm_reference.model import CausalSelfAttention, ModelConfig, rope_tables

SHAPES = {  # the presets' attention, at their training context
    "gpt2-124m MHA": dict(n_head=12, d_model=768, context_length=1024),
    "llama-style GQA": dict(n_head=8, n_kv_head=2, d_model=512, context_length=512,
                            position="rope"),
}
for name, shape in SHAPES.items():
    config = ModelConfig(vocab_size=8192, n_layer=1, **shape)
    attn = CausalSelfAttention(config, 0).cuda()
    T = config.context_length
    rope = None
    if config.position == "rope":
        rope = tuple(t.cuda() for t in rope_tables(config.head_dim, T))
    x = torch.randn(8, T, config.d_model, device="cuda", requires_grad=True)
    # only the flash kernel allowed: "No available kernel" if it cannot run
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast(
            "cuda", dtype=torch.bfloat16):
        attn(x, rope).float().square().mean().backward()
    # float32 (inference): grouped k/v expanded, so a fused kernel serves it
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION,
                                       SDPBackend.EFFICIENT_ATTENTION]):
        attn(x.detach(), rope)
    print(f"{name}: flash (bf16 fwd+bwd), fused fp32")
EOF
    paste -sd ';' "$1"
}

torchrun_resume() {
    local run=$WORK/torchrun nproc pid code
    nproc=$(( $(nvidia-smi -L | wc -l) >= 2 ? 2 : 1 ))
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$nproc" \
        -m llm_reference train --preset tiny --data "$DATA" --out "$run" \
        --max-steps 1500 --set 'train.device="cuda"' --set 'train.dtype="bfloat16"' \
        --set train.checkpoint_interval=1000 --set train.eval_interval=500 \
        >"$1" 2>&1 &
    pid=$!
    for _ in $(seq 600); do  # up to 60 s for 50 steps
        [[ -f $run/metrics.jsonl && $(wc -l <"$run/metrics.jsonl") -ge 50 ]] && break
        sleep 0.1
    done
    kill -TERM "$pid"
    wait "$pid"
    code=$?
    local stopped
    stopped=$(last_step "$run")
    if ! grep -q "resume with: " "$1" \
            || [[ ! -d $run/checkpoints/step_$(printf %07d "$stopped") ]]; then
        echo "SIGTERM at step $stopped (exit $code): no checkpoint there"
        return 1
    fi
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$nproc" \
        -m llm_reference train --out "$run" --resume >>"$1" 2>&1 || return 1
    [[ $(last_step "$run") == 1500 ]] || return 1
    local note=""
    [[ $nproc == 1 ]] && note=" (one GPU: WORLD_SIZE=1 runs as one process, no NCCL)"
    echo "$nproc process(es): SIGTERM at step $stopped saved it (torchrun exit" \
         "$code), resumed to 1500$note"
}

fsdp_compile() {
    if (( $(nvidia-smi -L | wc -l) < 2 )); then
        echo "skipped: needs 2 GPUs"
        return 0
    fi
    local run=$WORK/fsdp
    cp -r "$WORK/torchrun" "$run"
    sed -i 's/^parallel = "ddp"/parallel = "fsdp"/; s/^compile = false/compile = true/;
            s/^max_steps = 1500/max_steps = 1600/' "$run/config.toml"
    TORCH_LOGS=graph_breaks "$PY" -m torch.distributed.run --standalone \
        --nproc-per-node 2 -m llm_reference train --out "$run" --resume >"$1" 2>&1 \
        || return 1
    grep -q "__graph_breaks" "$1" && { echo "graph breaks under FSDP: see $1"; \
                                       return 1; }
    [[ $(last_step "$run") == 1600 ]] || return 1
    echo "2 processes, fsdp + bf16 + compile: resumed from DDP, 1500 -> 1600"
}

generate() {
    "$PY" -m llm_reference generate --run "$WORK/torchrun" --device cuda \
        --prompt "def " --max-new-tokens 128 --temperature 0 >"$1" 2>&1 || return 1
    grep -o '\[[0-9.]* s, KV cache\]' "$1"
}

bench_serve() {
    "$PY" benchmarks/serve.py --run "$WORK/torchrun" --device cuda --quick \
        >"$1" 2>&1 || return 1
    tail -n 3 "$1" | tr -s ' ' | paste -sd ';' -
}

# --- run them (when executed; `source` only defines the functions) -----------------

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
WORK=${1:-$(mktemp -d -t gpu-check.XXXXXX)}
mkdir -p "$WORK"
DATA=$WORK/data

if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA GPU visible to $PY: nothing to check" >&2
    exit 2
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'GPU: \
{p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB; \
torch {torch.__version__}, CUDA {torch.version.cuda}; {torch.cuda.device_count()} GPU(s)')"
echo "work folder: $WORK"
"$PY" -m llm_reference prepare --source stdlib --max-bytes 4M --vocab-size 8192 \
    --workers 8 --out "$DATA" >"$WORK/prepare.log" 2>&1 \
    || { echo "FAIL prepare: see $WORK/prepare.log"; exit 1; }

check bench-train bench_train
check trainer trainer
check fp16 fp16
check sdpa sdpa
check torchrun torchrun_resume
check fsdp-compile fsdp_compile
check generate generate
check bench-serve bench_serve

if (( FAILED )); then
    echo "$FAILED check(s) failed; logs in $WORK"
    exit 1
fi
echo "all checks passed; logs in $WORK"
