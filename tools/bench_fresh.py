"""The probes of :mod:`tools.bench_probes` that need a fresh process for each setting
(``compile``, ``malloc``): XLA reads its flags and glibc its allocator settings once, when a
process starts using them. Each setting runs a small script in a subprocess, in turns, and the
medians over the rounds are reported.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fresh(script: str, *args: object, xla_flags: str | None = None) -> list[str]:
    """The lines ``script`` prints in a fresh Python process (``XLA_FLAGS`` replaced when given);
    its last line of error if it fails."""
    env = {**os.environ} if xla_flags is None else {**os.environ, "XLA_FLAGS": xla_flags}
    command = [sys.executable, "-c", script, *map(str, args)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return done.stdout.strip().splitlines()


_MALLOC = """
import resource, sys, time, numpy as np
from experiments.run import runtime
runtime.set_threads(int(sys.argv[2]))
kept = sys.argv[3] == "kept" and runtime.keep_freed_memory()
from experiments.benchmarks.measure import CONFIGS
from experiments.benchmarks.bench_steps import BATCH, STEPS, VOCAB, jax_step, torch_concise_step
spec = CONFIGS[sys.argv[1]].spec()
X = np.random.default_rng(0).integers(0, VOCAB, (BATCH, STEPS))
steps = {"jax-bptt": jax_step(spec, X, X, "bptt"), "torch": torch_concise_step(spec, X, X)}
for name, step in steps.items():
    for _ in range(3):
        step()
    times, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(int(sys.argv[4])):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(times)
    print(name, kept, 1e3 * np.median(times), 1e3 * min(times), faults)
"""


def malloc(config: str, threads: int, repeats: int, rounds: int = 3) -> list[str]:
    """In turns, a fresh process with glibc's default malloc and one with
    :func:`experiments.run.runtime.keep_freed_memory`: jax-bptt's and PyTorch's steps, median and
    best ms, page faults a step."""
    found: dict[tuple[str, str], list[list[float]]] = collections.defaultdict(list)
    for _ in range(rounds):
        for mode in ("default", "kept"):
            for line in _fresh(_MALLOC, config, threads, mode, repeats)[-2:]:
                impl, kept, *figures = line.split()
                mode_name = "keeps freed memory" if kept == "True" else "glibc's default"
                found[(impl, mode_name)].append([float(x) for x in figures])
    lines = [f"{config}: {rounds} rounds of a fresh process each, {repeats} steps, medians"]
    for (impl, mode), runs in found.items():
        median, best, faults = (statistics.median(r[k] for r in runs) for k in range(3))
        lines.append(
            f"{impl:9s} malloc {mode:19s} {median:8.2f} ms  (best {best:.2f})"
            f"  {faults:7.0f} page faults a step"
        )
    return lines


_COMPILE = """
import json, sys, time, numpy as np
from experiments.run import runtime
if int(sys.argv[2]):
    runtime.set_threads(int(sys.argv[2]))
runtime.keep_freed_memory()  # as every command (the flags: the caller's XLA_FLAGS)
runtime.enable_compile_cache(sys.argv[3])
from experiments.benchmarks.measure import CONFIGS
import jax, rnn_jax
from numpy_ref.spec import init_params
spec = CONFIGS[sys.argv[1]].spec()
init, step = rnn_jax.make_train_step(spec, 1.0, 1.0, "bptt")
p = rnn_jax.training.pack(spec, init_params(spec, 0))  # as train_epoch trains
o, X, state = init(p), np.zeros((32, 35), np.int64), rnn_jax.begin_state(spec, 32)
t0 = time.perf_counter(); lowered = step.lower(p, o, X, X, state)
t1 = time.perf_counter(); compiled = lowered.compile()
t2 = time.perf_counter(); jax.block_until_ready(compiled(p, o, X, X, state))
t3 = time.perf_counter()
print(json.dumps({"trace_and_lower": t1 - t0, "compile": t2 - t1, "run": t3 - t2}))
"""


def compile_times(config: str, threads: int, rounds: int = 2) -> list[str]:
    """Per LLVM level, a fresh process with an empty persistent cache (cold), then another that
    finds the first one's program there (warm)."""
    settings = {
        "XLA's default (level 3)": "",
        "LLVM level 2": "--xla_backend_optimization_level=2",
        "LLVM level 1": "--xla_backend_optimization_level=1",
    }
    found: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
    for _ in range(rounds):
        for name, flags in settings.items():
            with tempfile.TemporaryDirectory() as cache:
                for kind in ("cold", "warm"):
                    last = _fresh(_COMPILE, config, threads, cache, xla_flags=flags)[-1]
                    found[(name, kind)].append(json.loads(last))
    lines = [f"{config}: the jax-bptt step in a fresh process, {rounds} rounds, medians (s)"]
    for (name, kind), runs in found.items():
        parts = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        lines.append(
            f"{name:30s} {kind}: trace+lower {parts['trace_and_lower']:.3f}, "
            f"XLA compile {parts['compile']:.3f}, first step {parts['run']:.3f}"
        )
    return lines
