#!/usr/bin/env bash
# The GPU smoke run of the whole workflow (config/gpu-smoke.yaml: Qwen2.5-0.5B from the hub, vLLM, Llama
# Guard 3 1B, Unsloth QLoRA), two stages, then a report of what it measured:
#   bash benchmarks/gpu_smoke.sh [WORKDIR]      # default benchmarks/work/gpu-smoke
# Writes benchmarks/results/gpu_smoke.md: wall time and tokens/s per rule (from the jobs' benchmark files and
# manifests), DPO steps/s and the peak GPU memory sampled by nvidia-smi every half second.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${1:-benchmarks/work/gpu-smoke}
mkdir -p "$workdir"
cp config.yaml "$workdir/config.yaml"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$workdir/gpu_memory_mib.txt" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
start=$(date +%s)
snakemake --cores all --directory "$workdir" --configfile "$workdir/config.yaml" config/gpu-smoke.yaml \
    -- stage2_model
echo "wall_seconds=$(( $(date +%s) - start ))" > "$workdir/wall.txt"
kill $sampler 2>/dev/null || true
python benchmarks/rule_times.py "$workdir/results/benchmarks" --manifests "$workdir/results" \
    --gpu-memory "$workdir/gpu_memory_mib.txt" --title "GPU smoke run (config/gpu-smoke.yaml)" \
    > benchmarks/results/gpu_smoke.md
cat benchmarks/results/gpu_smoke.md
