"""The benchmark measures what it says: its timing scheme and its arithmetic, on a fake clock.

Speed itself is never asserted in a test (experiments/benchmarks/bench.py measures it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.benchmarks import bench
from experiments.benchmarks.measure import measure

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock that only moves when a fake step runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_measure_times_every_step_in_turns_and_counts_each_call() -> None:
    clock = FakeClock()
    calls = {"a": 0, "b": 0}
    seconds = {"a": 0.002, "b": 0.008}
    log = []

    def make(name):
        def step() -> None:
            calls[name] += 1
            log.append(name)
            clock.now += seconds[name] * (100 if calls[name] == 1 else 1)  # a slow first call

        return step

    times, first = measure(
        {"a": make("a"), "b": make("b")}, warmup=2, repeats=25, block=10, settle=3, clock=clock
    )
    assert first == {"a": pytest.approx(0.2), "b": pytest.approx(0.8)}
    assert [len(t) for t in times.values()] == [25, 25]
    assert times["a"] == [pytest.approx(0.002)] * 25 and times["b"] == [pytest.approx(0.008)] * 25
    # 1 first + 2 warm-up + 3 turns of (3 settling + up to 10 timed) calls
    assert calls == {"a": 1 + 2 + 3 * 3 + 25, "b": 1 + 2 + 3 * 3 + 25}
    # the turns rotate: a b | b a | a b, each turn 3 settling calls + 10 timed (5 in the last)
    runs = [[log[6], 0]]
    for name in log[6:]:
        if name != runs[-1][0]:
            runs.append([name, 0])
        runs[-1][1] += 1
    assert runs == [["a", 13], ["b", 26], ["a", 13 + 8], ["b", 8]]


def test_summarize_reports_medians_tokens_per_second_and_ratios() -> None:
    times = {
        "numpy": [0.004, 0.002, 0.003],
        "jax-bptt": [0.001, 0.0015, 0.001],
        "torch": [0.002, 0.002, 0.005],
    }
    results = {r.impl: r for r in bench.summarize("rnn", times, {"jax-bptt": 0.75})}
    tokens = bench.BATCH * bench.STEPS
    assert results["numpy"].step_ms == pytest.approx(3.0)
    assert results["numpy"].best_ms == pytest.approx(2.0)
    assert results["jax-bptt"].tokens_per_sec == pytest.approx(tokens / 0.001)
    assert results["jax-bptt"].vs_numpy == pytest.approx(3.0)
    assert results["jax-bptt"].vs_torch == pytest.approx(2.0)
    assert results["numpy"].vs_torch == pytest.approx(2 / 3)
    assert results["jax-bptt"].compile_s == 0.75 and results["numpy"].compile_s is None
    table = bench.format_table(list(results.values()))
    assert "3.00x" in table and "0.67x" in table and "0.75" in table


_FAULTS = """
import resource, sys
import numpy as np
from experiments.run.runtime import keep_freed_memory
applied = sys.argv[1] == "kept" and keep_freed_memory()
np.ones(48 << 18, np.float32)  # 48 MB, above glibc's largest threshold for its heap
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(48 << 18, np.float32)  # freed at once, allocated again
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_keep_freed_memory_reuses_a_freed_buffer_without_page_faults() -> None:
    """What experiments.run.runtime sets for every command: XLA frees and allocates a step's
    buffers every step; by default glibc maps a large one anew each time (page faults)."""
    found = {}
    for mode in ("default", "kept"):
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        )
        applied, faults = done.stdout.split()
        found[mode] = (applied, int(faults))
    if found["kept"][0] != "True":
        pytest.skip("not glibc")
    # fresh pages every time: 12,288 of 4 KiB, or 24 where transparent huge pages (2 MiB) serve
    assert found["default"][1] >= 20, found
    assert found["kept"][1] == 0, found


def test_end_to_end_efficiency_is_wall_time_over_compile_plus_steps() -> None:
    from experiments.benchmarks import end_to_end

    found = end_to_end.commands(["rnn-scratch", "lstm"], ["jax", "numpy"], 100, 16)
    assert [(c.config, c.impl, c.members) for c in found] == [
        ("rnn-scratch", "jax", 1),
        ("rnn-scratch", "numpy", 1),
        ("lstm", "jax", 1),
        ("lstm", "numpy", 1),
        ("rnn-scratch", "jax", 16),
    ]
    assert "--seeds" in found[-1].argv and "0-15" in found[-1].argv
    c = found[0]
    c.wall, c.steps, c.step, c.compile, c.tokens = 30.0, 800, 0.02, 1.0, 800 * 32 * 35
    assert c.step_bound == pytest.approx(17.0) and c.efficiency == pytest.approx(30 / 17)
    table = end_to_end.format_table([c])
    assert "1.76x" in table and "17.0" in table and "56,000" in table  # 32*35 tokens / 20 ms
