"""What the bench times and how: the configurations of the book's sections, and :func:`measure`,
which times steps by turns (``experiments.benchmarks.bench``'s module docstring says why).

Shared by the bench of one run's step (:mod:`experiments.benchmarks.bench`), of populations
(:mod:`experiments.benchmarks.bench_population`) and the probes in ``tools/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from experiments.benchmarks.bench_steps import VOCAB, Step
from numpy_ref.spec import ModelSpec

BLOCK, SETTLE = 10, 3  # timed steps per turn, untimed steps before them


@dataclass(frozen=True)
class BenchConfig:
    name: str
    kind: str
    num_hiddens: int
    num_layers: int = 1
    note: str = ""

    def spec(self) -> ModelSpec:
        return ModelSpec(self.kind, VOCAB, self.num_hiddens, self.num_layers, "after")


CONFIGS = {
    c.name: c
    for c in (
        BenchConfig("rnn-scratch", "rnn", 512, note="d2l 8.5"),
        BenchConfig("rnn", "rnn", 256, note="d2l 8.6"),
        BenchConfig("gru", "gru", 256, note="d2l 9.1 (reset after)"),
        BenchConfig("lstm", "lstm", 256, note="d2l 9.2"),
        BenchConfig("deep-lstm", "lstm", 256, 2, note="d2l 9.3"),
    )
}
DEFAULT_CONFIGS = ("rnn-scratch", "rnn", "gru", "lstm", "deep-lstm")


def measure(
    steps: dict[str, Step],
    warmup: int,
    repeats: int,
    block: int = BLOCK,
    settle: int = SETTLE,
    clock: Callable[[], float] = time.perf_counter,
    cpu_times: dict[str, list[float]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Time every step (module docstring): the first call alone, ``warmup`` untimed calls, then
    ``repeats`` timed calls each, in turns of ``block`` after ``settle`` untimed calls.

    Args:
        cpu_times: if given, filled with the process CPU time (``time.process_time``, every
            thread) of every timed call, per step.

    Returns:
        ``(times, first)``: the seconds of every timed call and of the first call, per step.
    """
    cpu: dict[str, list[float]] = cpu_times if cpu_times is not None else {}

    def timed(step: Step, name: str | None = None) -> float:
        start, start_cpu = clock(), time.process_time()
        step()
        seconds = clock() - start
        if name is not None:
            cpu.setdefault(name, []).append(time.process_time() - start_cpu)
        return seconds

    first = {}
    for name, step in steps.items():
        first[name] = timed(step)
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(-(-repeats // block)):  # take turns by blocks, in a rotating order
        for name in order[r % len(order) :] + order[: r % len(order)]:
            for _ in range(settle):  # lets the previous implementation's threads go idle
                steps[name]()
            for _ in range(min(block, repeats - r * block)):
                times[name].append(timed(steps[name], name))
    return times, first


def text_table(rows: list[tuple[str, ...]], left: int = 1) -> str:
    """``rows`` (the header first) as aligned text: the first ``left`` columns to the left, the
    others (numbers) to the right, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if j < left else c.rjust(w) for j, (c, w) in pairs))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
