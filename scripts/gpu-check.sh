#!/usr/bin/env bash
# The GPU check of issue 11, one command, under 8 minutes on an H100/H200:
#
#   scripts/gpu-check.sh              # on a machine whose Python has JAX with CUDA, optax, CUDA PyTorch
#   scripts/gpu-check.sh --dry-run    # a tiny, fast version of every step, on the CPU (tests/test_gpu_check.py)
#
# Steps: (1) the devices JAX and PyTorch see; (2) the tests that take a GPU (tests/test_gpu.py);
# (3) experiments.bench on the GPU, PyTorch's cuDNN models side by side; (4) the population bench;
# (5) one 500-epoch run of the book's scratch RNN with JAX; (5b) bench --end-to-end: the 500-epoch
# commands (scratch RNN, LSTM; JAX and PyTorch) and a 64-member JAX population, wall time against
# their steps (goals: the scratch run under 10 s, the population under 60 s); (6) the table of (3)-(5), with the goals, into docs/performance.md between the lines
# <!-- gpu-check: begin --> and <!-- gpu-check: end -->.
#
# Options: --out DIR (default runs/gpu-check), --doc FILE (default docs/performance.md; with
# --dry-run DIR/performance.md, so that a dry run leaves the repository's page alone),
# PYTHON=... (default python). Exit status: that of the first step that failed, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
DRY=0
OUT=runs/gpu-check
DOC=
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --doc) DOC=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
if [ "$DRY" = 1 ]; then
  DEV=cpu; DOC=${DOC:-$OUT/performance.md}
  TESTS=(-k "rnn-L1")
  BENCH=(--configs rnn --impls jax-bptt torch --repeats 2 --warmup 0)
  POPULATION=(--population 1,2 --quick --configs rnn)
  SCRATCH=(--epochs 2 --max-tokens 2000)
  END_TO_END=(--configs rnn-scratch --impls jax-bptt --epochs 1 --members 2 --repeats 2)
else
  DEV=gpu; DOC=${DOC:-docs/performance.md}
  TESTS=()
  BENCH=()
  POPULATION=(--population 1,4,16,64)
  SCRATCH=(--epochs 500)
  END_TO_END=(--epochs 500 --members 64 --repeats 20)
fi
START=$SECONDS
step() { echo; echo "== gpu-check step $1 ($((SECONDS - START)) s so far)"; }

step "1: devices"
"$PY" -c "import jax; print('JAX', jax.__version__, jax.devices())"
"$PY" -c "import torch; print('PyTorch', torch.__version__, 'CUDA', torch.cuda.is_available(), 'cuDNN', torch.backends.cudnn.version())" || echo "PyTorch not importable"

step "2: the tests that take a GPU"
RNN_LM_TEST_DEVICE=$DEV "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py "${TESTS[@]}"

step "3: bench on the $DEV, PyTorch's cuDNN models beside JAX"
"$PY" -m experiments.bench --device "$DEV" --corpus-mb 0 --json "$OUT/bench.json" "${BENCH[@]}"

step "4: population bench (rnn_jax/epoch.py)"
"$PY" -m experiments.bench "${POPULATION[@]}" --device "$DEV" --corpus-mb 0 --json "$OUT/population.json"
POP_JSON=(--population "$OUT/population.json")

step "5: the book's scratch RNN with JAX, ${SCRATCH[*]}"
"$PY" -m experiments.rnn_scratch --impl jax --device "$DEV" --iter seq --overwrite \
  --out "$OUT/scratch" "${SCRATCH[@]}"

step "5b: the user's clock: whole commands against their steps, ${END_TO_END[*]}"
"$PY" -m experiments.bench --end-to-end --device "$DEV" --json "$OUT/end_to_end.json" "${END_TO_END[@]}"

step "6: the table, into $DOC"
COMMAND="scripts/gpu-check.sh"
[ "$DRY" = 1 ] && COMMAND="scripts/gpu-check.sh --dry-run"
"$PY" scripts/gpu_check_report.py --bench "$OUT/bench.json" --scratch "$OUT/scratch" \
  --doc "$DOC" --command "$COMMAND" "${POP_JSON[@]}"
echo; echo "gpu-check: done in $((SECONDS - START)) s"
