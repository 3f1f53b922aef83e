"""``bench --end-to-end``: the user's clock, whole commands against their steps.

The commands run as a user runs them, each in a fresh process, with JAX's persistent compilation
cache off (every compilation counted, as in a first run)::

    python -m experiments.rnn_scratch --impl I --iter seq --epochs E --out TMP --no-compile-cache
    python -m experiments.lstm        --impl I --iter seq --epochs E --out TMP --no-compile-cache
    python -m experiments.rnn_scratch --impl jax --iter seq --seeds 0-(M-1) --epochs E ...

for I in jax, numpy and torch (PyTorch's book-style loop: ``nn.RNN``/``nn.LSTM``, one step per
minibatch). Beside each command's wall time, the time its steps alone would take, measured in
this process right after, with the bench's own step (:mod:`experiments.benchmarks.bench_steps`)
on the same configuration::

    step-bound = compile + steps x step time

``steps`` is the number of minibatches the command trained (its ``metrics.jsonl``: tokens over
B*T); ``step time`` the median of ``--repeats`` timed steps (jax: ``jax-bptt``; a population: one
call of its epoch program, :func:`bench_population.population_step`, per ``STEPS_PER_CALL`` (8)
steps of every member); ``compile`` the first jitted call of a cold process, less one step (JAX
only). ``efficiency`` = wall / step-bound: 1.00 is a command that does nothing but its steps, and
every second of start-up, validation, checkpoints, plots and printing shows in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.benchmarks.bench_population import STEPS_PER_CALL, population_step
from experiments.benchmarks.bench_steps import BATCH, STEPS, make_steps
from experiments.benchmarks.measure import CONFIGS, measure, text_table

COMMANDS = (("rnn_scratch", "rnn-scratch"), ("lstm", "lstm"))  # (section, bench config)
STEP_IMPL = {"jax": "jax-bptt", "numpy": "numpy", "torch": "torch"}


@dataclass
class Command:
    """One command run and what its steps alone cost."""

    label: str
    impl: str
    config: str  # the bench configuration of its model
    members: int
    argv: list[str]
    wall: float = 0.0
    steps: int = 0  # minibatches per member
    tokens: int = 0  # every member's
    step: float = 0.0  # seconds per step (a population: per step of all members)
    compile: float = 0.0

    @property
    def step_bound(self) -> float:
        return self.compile + self.steps * self.step

    @property
    def efficiency(self) -> float:
        return self.wall / self.step_bound


DEVICE_FLAG = {"jax": "gpu", "torch": "cuda"}  # --device of a command on the GPU


def commands(
    configs: list[str], impls: list[str], epochs: int, members: int, device: str = "cpu"
) -> list[Command]:
    """The commands of the module docstring for the bench ``configs`` among rnn-scratch and
    lstm (``device`` gpu: jax and torch on the GPU)."""

    def argv(section: str, impl: str, *more: str) -> list[str]:
        where = ["--device", DEVICE_FLAG[impl]] if device == "gpu" else []
        return [
            "-m",
            f"experiments.{section}",
            "--impl",
            impl,
            "--iter",
            "seq",
            "--epochs",
            str(epochs),
            *where,
            *more,
        ]

    found = []
    for section, config in COMMANDS:
        if config not in configs:
            continue
        for impl in impls:
            found.append(Command(f"{section} --iter seq", impl, config, 1, argv(section, impl)))
    if members > 1 and "jax" in impls:
        argv = argv("rnn_scratch", "jax", "--seeds", f"0-{members - 1}")
        found.append(
            Command(f"rnn_scratch --seeds 0-{members - 1}", "jax", "rnn-scratch", members, argv)
        )
    return found


def run_command(command: Command, threads: int | None) -> None:
    """Run ``command`` in a fresh process (its output discarded) and read its run directory."""
    with tempfile.TemporaryDirectory(prefix="rnn-lm-e2e-") as folder:
        out = Path(folder) / "run"
        argv = [sys.executable, *command.argv, "--out", str(out), "--no-compile-cache"]
        if threads is not None:
            argv += ["--threads", str(threads)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
        command.wall = time.perf_counter() - start
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise RuntimeError(f"{' '.join(command.argv[1:])}: {tail[0]}")
        runs = sorted(out.glob("*/metrics.jsonl")) if command.members > 1 else [out]
        files = [p if p.name == "metrics.jsonl" else p / "metrics.jsonl" for p in runs]
        tokens = [
            sum(
                round(r["tokens_per_sec"] * r["seconds"])
                for r in map(json.loads, f.read_text().splitlines())
            )
            for f in files
        ]
    command.tokens = sum(tokens)
    command.steps = round(max(tokens) / (BATCH * STEPS))


def time_steps(found: list[Command], repeats: int, device: str = "cpu") -> None:
    """Each command's step time and compile time, measured here (module docstring)."""
    for name in dict.fromkeys(c.config for c in found):
        spec = CONFIGS[name].spec()
        mine = [c for c in found if c.config == name]
        impls = sorted({STEP_IMPL[c.impl] for c in mine if c.members == 1})
        steps = make_steps(spec, impls, device)
        for c in mine:
            if c.members > 1:
                steps[f"pop{c.members}"] = population_step(spec, c.members, device)
        times, first = measure(steps, warmup=3, repeats=repeats)
        median = {k: float(np.median(v)) for k, v in times.items()}
        for c in mine:
            key = STEP_IMPL[c.impl] if c.members == 1 else f"pop{c.members}"
            per_call = STEPS_PER_CALL if c.members > 1 else 1
            c.step = median[key] / per_call
            if c.impl == "jax":
                c.compile = max(0.0, first[key] - median[key])


def format_table(found: list[Command]) -> str:
    header = (
        "command",
        "impl",
        "wall s",
        "steps",
        "step ms",
        "compile s",
        "step-bound s",
        "efficiency",
        "wall tok/s",
        "step tok/s",
    )
    rows = [header]
    for c in found:
        rows.append(
            (
                c.label,
                c.impl,
                f"{c.wall:.1f}",
                f"{c.steps:,}",
                f"{c.step * 1e3:.2f}",
                f"{c.compile:.2f}",
                f"{c.step_bound:.1f}",
                f"{c.efficiency:.2f}x",
                f"{c.tokens / c.wall:,.0f}",
                f"{c.members * BATCH * STEPS / c.step:,.0f}",
            )
        )
    return text_table(rows, left=2)


def bench_end_to_end(
    configs: list[str],
    impls: list[str],
    epochs: int,
    members: int,
    repeats: int,
    threads: int | None,
    device: str = "cpu",
) -> list[Command]:
    """Run every command, then time its steps; the commands in the table's order."""
    found = commands(configs, impls, epochs, members, device)
    for c in found:
        print(f"# python {' '.join(c.argv)}", file=sys.stderr, flush=True)
        run_command(c, threads)
    time_steps(found, repeats, device)
    return found


def main(args: Any, env: dict[str, Any], prog: str) -> int:
    """``bench --end-to-end``: the commands' wall time against their steps', printed."""
    from dataclasses import asdict

    from experiments.run import runtime
    from experiments.run.cli import fail
    from experiments.run.rundir import write_json

    runtime.disable_compile_cache()  # the first call here is a cold compile, as in the commands
    impls = ["jax", "torch"] if args.device == "gpu" else ["jax", "numpy", "torch"]
    impls = [i for i in impls if i != "torch" or env["torch"] is not None]
    if args.impls:  # the steps' names: jax-bptt runs the jax command
        impls = [i for i in impls if i in {s.split("-")[0] for s in args.impls}]
    configs = [c for c in args.configs if c in dict(COMMANDS).values()]
    print(
        f"--epochs {args.epochs}, --iter seq; step: median of {args.repeats} timed steps; "
        f"every command in a fresh process without the compile cache\n"
    )
    try:
        found = bench_end_to_end(
            configs, impls, args.epochs, args.members, args.repeats, args.threads, args.device
        )
    except RuntimeError as err:
        return fail(prog, str(err), 1)
    print(format_table(found), flush=True)
    if args.json:
        rows = [
            {**asdict(c), "step_bound": c.step_bound, "efficiency": c.efficiency} for c in found
        ]
        write_json(args.json, {"environment": env, "end_to_end": rows})
    return 0
