#!/usr/bin/env bash
# The measurements behind the published GPU figures, on one CUDA device, in two stages that fit a 10-minute slot each:
#
#   benchmarks/gpu_checks.sh OUT models      the CUDA tests (the fused attention kernel under vmap, bf16), then
#                                            training throughput (results/gpu/throughput.txt) with the explicit
#                                            attention the harness uses, and with the fused kernel
#   benchmarks/gpu_checks.sh OUT bench [override ...]
#                                            configs/gpu.yaml from scratch, timed, rows into OUT/gpu; then
#                                            `satbench report OUT/gpu --header "..."` anywhere
#
# Every command is printed before it runs, and each stage ends with its wall time. Set BENCH_LIMIT (seconds, default
# 560) to stop the bench early: rerunning the same command resumes it, but the published time is an uninterrupted run.
set -euo pipefail

out=${1:?usage: benchmarks/gpu_checks.sh OUT models|bench [override ...]}
stage=${2:?usage: benchmarks/gpu_checks.sh OUT models|bench [override ...]}
shift 2
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
start=$(date +%s)

run() {
    echo "+ $*" >&2
    "$@"
}

case "$stage" in
models)
    run "$python" -m pytest -q -m gpu tests/test_ensemble.py 2>&1 | tee "$out/gpu_tests.txt"
    shape=(--members 256 --d-model 64 --seq-len 64 --batch 64 --loop-members 8 --rounds 3)
    run "$python" benchmarks/throughput.py "${shape[@]}" --variant soft saturated hard | tee "$out/throughput.txt"
    run "$python" benchmarks/throughput.py "${shape[@]}" --variant soft saturated --fused | tee -a "$out/throughput.txt"
    ;;
bench)
    run timeout "${BENCH_LIMIT:-560}" "$python" -m probes.cli bench configs/gpu.yaml "$@" --quiet --no-report --force \
        --run-dir "$out/gpu" 2>&1 | tee "$out/bench.txt"
    ;;
*)
    echo "gpu_checks.sh: unknown stage '$stage' (models or bench)" >&2
    exit 2
    ;;
esac
echo "gpu_checks.sh: stage $stage took $(( $(date +%s) - start )) s" | tee -a "$out/$stage.wall"
