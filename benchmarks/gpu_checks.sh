#!/usr/bin/env bash
# The measurements behind the published GPU figures, on one CUDA device, in stages of under 10 minutes each:
#
#   benchmarks/gpu_checks.sh OUT models      the CUDA tests (one fused attention call for all members, no host
#                                            sync in a step, the compiled step with CUDA graphs), then training
#                                            throughput into OUT/throughput.txt: every variant as the harness
#                                            trains it, and soft with explicit attention
#   benchmarks/gpu_checks.sh OUT compiled    throughput of soft and saturated with TF32 (train.tf32), then also
#                                            compiled (train.compile), and the compiled step against the
#                                            uncompiled one in fp32 (compiled_step.py), into
#                                            OUT/throughput_compiled.txt
#   benchmarks/gpu_checks.sh OUT bench [override ...]
#                                            configs/gpu.yaml, timed, rows into OUT/gpu; then
#                                            `satbench report OUT/gpu --header "..."` anywhere
#   benchmarks/gpu_checks.sh OUT norm_growth [override ...]
#                                            configs/norm_growth_gpu.yaml (10^5 steps), timed, rows into
#                                            OUT/norm_growth; report as above
#   benchmarks/gpu_checks.sh OUT decay_ties|fixed_scale|soft_to_saturated [override ...]
#                                            configs/<stage>_gpu.yaml, the training experiments at five times
#                                            their CPU steps, timed, rows into OUT/<stage>; report as above
#   benchmarks/gpu_checks.sh OUT b20_core|flare_core [override ...]
#                                            configs/<stage>_gpu.yaml, the peers' protocols on all their languages
#                                            and test lengths, timed, rows into OUT/<stage>; report as above. Their
#                                            LSTM rows: another OUT, with the overrides of the CPU
#                                            runs' commands (results/b20_core_lstm, flare_core_lstm)
#
# Every command is printed before it runs, and each stage ends with its wall time and exit status, also when a step
# fails. BENCH_LIMIT (seconds, default 560) stops the bench early; the same command resumes it from the rows in
# OUT/gpu. A published time needs an uninterrupted run into an OUT that holds no rows yet.
set -uo pipefail

usage="usage: benchmarks/gpu_checks.sh OUT models|compiled|bench|norm_growth|decay_ties|fixed_scale|soft_to_saturated|b20_core|flare_core [override ...]"
out=${1:?$usage}
stage=${2:?$usage}
shift 2
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
# The device machine runs a bare copy of the tree, never installed: a folder of links lays the top-level folders out
# as the installed satbench.languages, satbench.models, ... would be (pyproject.toml, [tool.setuptools.package-dir]).
tree=$(mktemp -d)
mkdir "$tree/satbench"
ln -s "$PWD"/satbench/*.py "$tree/satbench/"
packages=$("${PYTHON:-python3}" -c 'import tomllib; dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; print(" ".join(n.split(".", 1)[1] + ":" + d for n, d in dirs.items() if "." in n))')
for entry in $packages; do ln -s "$PWD/${entry#*:}" "$tree/satbench/${entry%%:*}"; done
export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"  # not the checkout itself: `import models` must fail here too
# -P: `python -m` would put the working directory first on sys.path, where satbench/ lacks the subpackages.
python=("${PYTHON:-python3}" -P)
start=$(date +%s)
status=0
trap 'rm -rf "$tree"; echo "gpu_checks.sh: stage $stage took $(( $(date +%s) - start )) s, exit status $status" | tee -a "$out/$stage.wall"' EXIT

run() {
    echo "+ $*" >&2
    "$@"
}

case "$stage" in
models)
    run "${python[@]}" -m pytest -q -m gpu tests/test_ensemble.py tests/test_train.py 2>&1 | tee "$out/gpu_tests.txt" \
        || status=$?
    shape=(--members 256 --d-model 64 --seq-len 64 --batch 64 --loop-members 8 --rounds 3)
    run "${python[@]}" benchmarks/throughput.py "${shape[@]}" --variant soft saturated hard 2>&1 \
        | tee "$out/throughput.txt" || status=$?
    run "${python[@]}" benchmarks/throughput.py "${shape[@]}" --variant soft --explicit 2>&1 \
        | tee -a "$out/throughput.txt" || status=$?
    ;;
compiled)
    # train.tf32, then train.compile with it (CUDA graphs of the compiled step); the compiled loop is one model, to keep
    # the stage short.
    shape=(--members 256 --d-model 64 --seq-len 64 --batch 64 --loop-members 8 --rounds 3)
    run "${python[@]}" benchmarks/throughput.py "${shape[@]}" --variant soft saturated --tf32 2>&1 \
        | tee "$out/throughput_compiled.txt" || status=$?
    run "${python[@]}" benchmarks/throughput.py "${shape[@]}" --loop-members 1 --variant soft saturated --tf32 --compile \
        2>&1 | tee -a "$out/throughput_compiled.txt" || status=$?
    run "${python[@]}" benchmarks/compiled_step.py --members 256 --d-model 64 --seq-len 64 --batch 64 2>&1 \
        | tee -a "$out/throughput_compiled.txt" || status=$?
    ;;
bench)
    run timeout "${BENCH_LIMIT:-560}" "${python[@]}" -m satbench bench configs/gpu.yaml "$@" --quiet --no-report \
        --run-dir "$out/gpu" 2>&1 | tee "$out/bench.txt" || status=$?
    ;;
norm_growth|decay_ties|fixed_scale|soft_to_saturated|b20_core|flare_core)
    run timeout "${BENCH_LIMIT:-560}" "${python[@]}" -m satbench bench "configs/${stage}_gpu.yaml" "$@" --quiet \
        --no-report --run-dir "$out/$stage" 2>&1 | tee "$out/$stage.txt" || status=$?
    ;;
*)
    echo "gpu_checks.sh: unknown stage '$stage'; $usage" >&2
    status=2
    ;;
esac
exit $status
