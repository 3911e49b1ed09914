#!/usr/bin/env bash
# GPU check: the numerics and gradient tests and the benchmark suite on a GPU, everything
# written into one folder (machine.txt, tests.log, tests.xml, benchmark/, summary.txt).
#
#   pip install -e ".[dev,cuda]"
#   bash scripts/gpu_check.sh [--out DIR]        # on a machine with an NVIDIA GPU (~8 min)
#   bash scripts/gpu_check.sh --cpu [--out DIR]  # smoke test on CPU (~1 min): a few tests,
#                                                #   benchmark.py --quick
#
# Each stage has its own time limit (GPU: tests 240 s, suite 300 s), so the script ends within
# about 9 minutes even when a stage hangs; a stage that fails or runs out of time is recorded in
# summary.txt and the next one still runs. Exit status: 0 when every stage passed, 1 otherwise,
# 2 on a bad command line, 3 when --cpu was not given and JAX sees no GPU.
set -uo pipefail

cd "$(dirname "$0")/.."
CPU=0
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) CPU=1; shift ;;
        --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (use --cpu, --out DIR)" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-gpu_check_$(date +%Y%m%d_%H%M%S)}"
mkdir -p "$OUT" || { echo "gpu_check.sh: cannot create $OUT" >&2; exit 2; }
PY="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

if [[ $CPU == 1 ]]; then
    export JAX_PLATFORMS=cpu
    TESTS=(tests/unit/test_compile.py tests/numerics/test_conservation.py::test_zero_balance_conserves_volume)
    SUITE=(--quick)
    T_TESTS=300; T_SUITE=300
else
    TESTS=(tests/numerics tests/gradients)
    SUITE=(--parts forward,gradient,batching,scaling --sizes 256,512,1024,2048,4096
           --repeat 3 --dtype float32)
    T_TESTS=240; T_SUITE=300
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)" || true
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
        || echo "nvidia-smi: not available"
    "$PY" -c "import jax; print('jax', jax.__version__, 'backend', jax.default_backend(), jax.devices())"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

if [[ $CPU == 0 ]] && ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')"; then
    echo "gpu_check.sh: JAX sees no GPU (see $OUT/machine.txt); install with" \
         "pip install -e \".[dev,cuda]\", or run with --cpu for the smoke test." | tee -a "$SUMMARY" >&2
    exit 3
fi

status=0
stage() {  # stage NAME LIMIT COMMAND...: run with a time limit, record the outcome
    local name="$1" limit="$2"; shift 2
    local start end rc
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    end=$(date +%s)
    if [[ $rc == 0 ]]; then
        echo "$name: passed in $((end - start)) s" | tee -a "$SUMMARY"
    else
        [[ $rc == 124 ]] && why="ran past ${limit} s" || why="exit $rc"
        echo "$name: FAILED ($why) after $((end - start)) s; see $OUT/$name.log" | tee -a "$SUMMARY"
        status=1
    fi
}

stage tests "$T_TESTS" "$PY" -m pytest -q -n 0 -p no:cacheprovider "${TESTS[@]}" \
    --junitxml="$OUT/tests.xml"
stage benchmark "$T_SUITE" "$PY" scripts/benchmark.py --out "$OUT/benchmark" "${SUITE[@]}"
tail -n 40 "$OUT/benchmark.log" >> "$SUMMARY" 2>/dev/null || true
echo "gpu_check.sh: everything is in $OUT"
exit $status
