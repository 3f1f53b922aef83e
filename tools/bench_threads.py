"""The measurements behind the thread policy: every thread count, on an idle and a loaded machine.

    python -m tools.bench_threads                      # 1 and every core, load 0 and 1
    python -m tools.bench_threads --threads 1 2 --load 0 1 --configs lstm --repeats 20

For each ``--load K`` (K busy processes started beside the benchmark, each a Python loop that
never sleeps: what another engineer's test run does to a shared machine) and each ``--threads N``,
``python -m experiments.bench --threads N --quick`` runs in a fresh subprocess (thread pools are
sized once per process) and its medians are collected; the thread counts of one load take turns
config by config, so that a change of the machine's own load hits them alike. The table gives
each implementation's median step time per thread count and load, and the ratio to 1 thread.
docs/performance.md explains the policy these figures chose (experiments/run/runtime.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from experiments.benchmarks.measure import CONFIGS, DEFAULT_CONFIGS
from experiments.run.flags import NON_NEGATIVE, POSITIVE, Parser

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def run_bench(threads: int, config: str, impls: list[str], repeats: int) -> dict[str, float]:
    """Median step ms per implementation of one ``experiments.bench`` run in a subprocess."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        command = [
            sys.executable,
            "-m",
            "experiments.bench",
            "--threads",
            str(threads),
            "--configs",
            config,
            "--impls",
            *impls,
            "--repeats",
            str(repeats),
            "--warmup",
            "2",
            "--corpus-mb",
            "0",
            "--json",
            str(out),
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1])
        results = json.loads(out.read_text())["results"]
    return {r["impl"]: r["step_ms"] for r in results}


def measure(
    threads: list[int], loads: list[int], configs: list[str], impls: list[str], repeats: int
) -> dict[tuple[int, int, str, str], float]:
    """``{(load, threads, config, impl): median step ms}``."""
    figures = {}
    for load in loads:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(load)]
        try:
            for config in configs:
                for n in threads:
                    for impl, ms in run_bench(n, config, impls, repeats).items():
                        figures[(load, n, config, impl)] = ms
                    print(f"load {load}, {n} thread(s), {config}: done", file=sys.stderr)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    return figures


def format_table(figures: dict[tuple[int, int, str, str], float], threads: list[int]) -> str:
    rows = sorted({(load, config, impl) for load, _, config, impl in figures})
    header = "| load | config | impl | " + " | ".join(f"{n} thr ms" for n in threads)
    header += " | " + " | ".join(f"{n} thr / 1 thr" for n in threads if n != threads[0]) + " |"
    lines = [header, "|" + "---|" * (3 + 2 * len(threads) - 1)]
    for load, config, impl in rows:
        ms = [figures.get((load, n, config, impl)) for n in threads]
        cells = [f"{m:.2f}" if m is not None else "-" for m in ms]
        ratios = [f"{m / ms[0]:.2f}" if m and ms[0] else "-" for m in ms[1:]]
        lines.append(f"| {load} | {config} | {impl} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    prog = "python -m tools.bench_threads"
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--threads", nargs="+", type=POSITIVE, default=sorted({1, cores or 1}))
    parser.add_argument(
        "--load",
        nargs="+",
        type=NON_NEGATIVE,
        default=[0, 1],
        help="busy processes beside the benchmark (default 0 1)",
    )
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--impls", nargs="+", default=["numpy", "jax-bptt", "torch"])
    parser.add_argument("--repeats", type=POSITIVE, default=20, help="timed steps per impl")
    try:
        args = parser.parse_args(argv)
        figures = measure(args.threads, args.load, args.configs, args.impls, args.repeats)
    except Exception as err:  # one line, never a traceback
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(os.sched_getaffinity(0))} cores; load average {os.getloadavg()[0]:.2f} at the end")
    print(format_table(figures, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
