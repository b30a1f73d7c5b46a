#!/usr/bin/env bash
# Where eqae's training step goes on a GPU, beside PyTorch, in one report.
#
#   scripts/gpu_bench.sh [EQAE_BINARY] [REPORT]
#
# Runs, each under its own time limit and all within about 8 minutes:
# - `eqae bench --device wgpu --profile` for D4 and D12 at batch 64 and 512
#   (the step's images/s, then its time by operation);
# - scripts/bench_pytorch.py (the same D4 network in PyTorch) at batch 64
#   and 512, on CUDA where PyTorch sees a GPU, else on the CPU (said so);
# - D4 and D12 at batch 512 with burn's transposed convolution for the
#   upsampling (`--burn-upsampling`), to see what eqae's product saves;
# - `eqae bench` of the baseline, C4 and C12 at batch 64.
# It needs the eqae binary (built elsewhere with `--features wgpu` or
# `--features vulkan`), this repository's scripts and cubecl.toml, and
# Python with PyTorch for the comparison; no Rust, no network, no data
# (the benchmark's inputs are random). Without an NVIDIA GPU it runs on
# whatever Vulkan device there is, e.g. Mesa's lavapipe on the CPU.
#
# Environment: EQAE_DEVICE (wgpu or vulkan; default wgpu), STEPS (timed
# steps per benchmark; default 5), PYTHON (default python3), LIMIT (seconds
# for the whole script; default 470).
set -uo pipefail
cd "$(dirname "$0")/.."

EQAE=${1:-target/release/eqae}
REPORT=${2:-gpu_bench_report.txt}
DEVICE=${EQAE_DEVICE:-wgpu}
STEPS=${STEPS:-5}
PYTHON=${PYTHON:-python3}
LIMIT=${LIMIT:-470}
START=$(date +%s)

if [ ! -x "$EQAE" ]; then
    echo "gpu_bench.sh: no eqae binary at $EQAE (give its path as the first argument)" >&2
    exit 2
fi

: >"$REPORT"
say() { echo "$@" | tee -a "$REPORT"; }
left() { echo $((LIMIT - ($(date +%s) - START))); }

# One step of the report under a time limit of its own, never past the
# script's; its output goes to the report as it comes.
step() {
    local limit=$1
    shift
    local remaining
    remaining=$(left)
    if [ "$remaining" -lt 15 ]; then
        say "skipped (the script's $LIMIT s are spent): $*"
        return
    fi
    [ "$limit" -gt "$remaining" ] && limit=$remaining
    say ""
    say "\$ $* (limit ${limit} s)"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$REPORT"
    local rc=${PIPESTATUS[0]}
    local t=$(($(date +%s) - t0))
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "(stopped at its limit after ${t} s)"
    elif [ "$rc" -ne 0 ]; then
        say "(failed with exit status $rc after ${t} s)"
    else
        say "(${t} s)"
    fi
}

say "# eqae GPU benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
say "eqae: $("$EQAE" --version 2>&1)"
say "device: --device $DEVICE"
if command -v nvidia-smi >/dev/null 2>&1; then
    say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
fi
if command -v vulkaninfo >/dev/null 2>&1; then
    say "Vulkan: $(vulkaninfo --summary 2>/dev/null | grep -m1 deviceName | sed 's/.*= //')"
fi
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
say "kernel cache: target/environment (cubecl.toml); timed steps: $STEPS"

# The first process compiles and autotunes every new kernel shape; the
# cache (cubecl.toml) keeps them for the processes after it.
for model in d4 d12; do
    for batch in 64 512; do
        step 110 "$EQAE" bench --device "$DEVICE" --model "$model" --batch "$batch" --steps "$STEPS" --profile
    done
done
torch_device=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null)
if [ -z "$torch_device" ]; then
    say ""
    say "PyTorch: not importable with $PYTHON; no comparison"
else
    [ "$torch_device" = cpu ] && say "" && say "PyTorch sees no CUDA device: its figures below are on the CPU ($(nproc) threads)"
    for batch in 64 512; do
        step 60 "$PYTHON" scripts/bench_pytorch.py --device "$torch_device" --batch "$batch" --steps "$STEPS" --threads "$(nproc)"
    done
fi

# The decoders' upsampling as burn's own transposed convolution instead of
# eqae's matrix product: what the replacement saves at batch 512.
for model in d4 d12; do
    step 60 "$EQAE" bench --device "$DEVICE" --model "$model" --batch 512 --steps "$STEPS" --burn-upsampling
done
for model in baseline c4 c12; do
    step 45 "$EQAE" bench --device "$DEVICE" --model "$model" --batch 64 --steps "$STEPS"
done

say ""
say "total: $(($(date +%s) - START)) s; report: $REPORT"
