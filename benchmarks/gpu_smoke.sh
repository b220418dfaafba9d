#!/usr/bin/env bash
# The GPU smoke run of the whole workflow, two stages, then a report of what it measured:
#   bash benchmarks/gpu_smoke.sh [WORKDIR]              # config/gpu-smoke.yaml: Qwen2.5-0.5B from the hub, vLLM,
#                                                       # Llama Guard 3 1B, Unsloth QLoRA; default WORKDIR
#                                                       # benchmarks/work/gpu-smoke, report results/gpu_smoke.md
#   bash benchmarks/gpu_smoke.sh --airgapped [WORKDIR]  # config/gpu-airgapped.yaml: no network, a random model
#                                                       # with Gemma 3 270M's shapes built on the spot;
#                                                       # report results/gpu_smoke_airgapped.md
# The report: wall time and tokens/s per rule (from the jobs' benchmark files and manifests), DPO steps/s and
# the peak GPU memory sampled by nvidia-smi every half second.
set -euo pipefail
cd "$(dirname "$0")/.."
overlay=config/gpu-smoke.yaml
name=gpu_smoke
if [[ "${1:-}" == "--airgapped" ]]; then
    overlay=config/gpu-airgapped.yaml
    name=gpu_smoke_airgapped
    shift
fi
workdir=${1:-benchmarks/work/${name//_/-}}
mkdir -p "$workdir"
cp config.yaml "$workdir/config.yaml"
if [[ "$overlay" == config/gpu-airgapped.yaml ]]; then
    python benchmarks/gpu_smoke.py --build-models "$workdir/models"
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$workdir/gpu_memory_mib.txt" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
start=$(date +%s)
snakemake --cores all --directory "$workdir" --configfile "$workdir/config.yaml" "$overlay" -- stage2_model
echo "wall_seconds=$(( $(date +%s) - start ))" > "$workdir/wall.txt"
kill $sampler 2>/dev/null || true
python benchmarks/rule_times.py "$workdir/results/benchmarks" --manifests "$workdir/results" \
    --gpu-memory "$workdir/gpu_memory_mib.txt" --title "GPU smoke run ($overlay)" \
    > "benchmarks/results/$name.md"
cat "benchmarks/results/$name.md"
