#!/usr/bin/env bash
# Issue 9's check at full length: a 500-epoch run interrupted twice (SIGINT, then kill -9) and
# resumed twice ends with the parameters and per-epoch metrics of an uninterrupted run, bit for bit.
#
#   scripts/resume-check.sh [DIR] [SECTION] [IMPL]    # default /tmp/resume-check rnn_concise jax
#
# Runs DIR/whole without a stop; DIR/cut is stopped with SIGINT after WAIT seconds, resumed, killed
# with SIGKILL after another WAIT seconds, resumed to the end; then compares the two (timings
# aside). PYTHON=... (default python), WAIT=... (default 25: the book's 8.6 model with JAX runs
# 500 epochs in ~80 s here; both stops must fall inside the run). Takes a few minutes.
set -u
DIR=${1:-/tmp/resume-check}; SECTION=${2:-rnn_concise}; IMPL=${3:-jax}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$DIR"
RUN=("$PY" -m "experiments.$SECTION")
"${RUN[@]}" --impl "$IMPL" --out "$DIR/whole" --overwrite > "$DIR/whole.log" 2>&1
echo "uninterrupted: rc $?"
"${RUN[@]}" --impl "$IMPL" --out "$DIR/cut" --overwrite > "$DIR/cut1.log" 2>&1 & pid=$!
sleep "${WAIT:-25}"; kill -INT $pid; wait $pid; echo "SIGINT: rc $?; $(tail -n 1 "$DIR/cut1.log")"
"${RUN[@]}" --resume "$DIR/cut" > "$DIR/cut2.log" 2>&1 & pid=$!
sleep "${WAIT:-25}"; kill -KILL $pid; wait $pid 2> /dev/null; echo "kill -9: rc $?"
"${RUN[@]}" --resume "$DIR/cut" > "$DIR/cut3.log" 2>&1; echo "resumed to the end: rc $?"
"$PY" - "$DIR" <<'PY'
import json
import sys
from pathlib import Path

from numpy_ref.checkpoint import load_checkpoint

d = Path(sys.argv[1])
a, b = load_checkpoint(d / "whole/checkpoint.npz"), load_checkpoint(d / "cut/checkpoint.npz")


def arrays(params):
    out = {k: v for k, v in params.items() if k != "layers"}
    for i, layer in enumerate(params.get("layers", [])):
        out.update({f"layers[{i}].{k}": v for k, v in layer.items()})
    return out


pa, pb = arrays(a.params), arrays(b.params)
same = [k for k in pa if pa[k].dtype == pb[k].dtype and pa[k].tobytes() == pb[k].tobytes()]
print(f"epochs {a.epoch} and {b.epoch}; parameters bit-identical: {len(same)} of {len(pa)} arrays")


def records(path):
    timing = ("tokens_per_sec", "seconds")
    return [{k: v for k, v in json.loads(x).items() if k not in timing} for x in open(path)]


ma, mb = records(d / "whole/metrics.jsonl"), records(d / "cut/metrics.jsonl")
once = [r["epoch"] for r in mb] == list(range(1, a.epoch + 1))
print(f"metrics.jsonl: every epoch once: {once}; every field but the timings identical: {ma == mb}")
print(f"resumed at epochs {json.loads((d / 'cut/config.json').read_text())['resumed_at']}")
sys.exit(0 if len(same) == len(pa) and once and ma == mb else 1)
PY
