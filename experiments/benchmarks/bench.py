"""Tokens per second of one full training step, every implementation side by side.

    python -m experiments.bench                         # every configuration, ~4 minutes
    python -m experiments.bench --quick                 # fewer repeats, no corpus, ~1 minute
    python -m experiments.bench --configs lstm --repeats 50 --json bench.json
    python -m experiments.bench --device gpu            # JAX on the GPU, PyTorch with cuDNN

A step is what one minibatch of training costs: forward, backward, clipping to theta = 1, SGD
update, on a (B, T) = (32, 35) minibatch of a V = 28 vocabulary, as in the book; the steps of
every implementation are in experiments/benchmarks/bench_steps.py.

Each step is timed alone (JAX: until the loss is ready). The implementations of a configuration
take turns in blocks of 10 timed steps, each after 3 untimed steps, so that a disturbance
on a shared machine hits them alike while the thread pools that NumPy's BLAS, XLA and PyTorch
keep spinning after a call do not slow down the next implementation's first steps; the figure is
the median over ``--repeats`` timed steps, after ``--warmup`` untimed steps. ``cpu ms`` is the
median CPU time of the process during a step (every thread): at one thread, the step's work
without the time spent waiting for a core, the steadier figure on a loaded machine (with more
threads it adds up the threads' times, and spinning pools count). For JAX, ``compile``
is the wall time of the first call of a new jitted step with an empty persistent compilation
cache (tracing, XLA compilation and one step), ``warm`` the same with the cache that first call
filled (what a second run of a command pays); see ``bench_steps.compile_times``. The thread
counts (``--threads``, default half the cores) and the machine's load average are printed. The
GRU is the PyTorch variant (reset gate after the recurrent product) so that every implementation
computes the same function.

A full run (not ``--quick``) also times loading a generated ``--corpus-mb`` MB text
(experiments/benchmarks/bench_corpus.py, the book repeated) as chars and as words; ``--corpus-mb
0`` skips it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.benchmarks.bench_steps import (
    BATCH,
    DEVICES,
    LR,
    STEPS,
    THETA,
    VOCAB,
    compile_times,
    make_steps,
)
from experiments.benchmarks.measure import (
    BLOCK,
    CONFIGS,
    DEFAULT_CONFIGS,
    SETTLE,
    BenchConfig,
    measure,
    text_table,
)
from experiments.run import runtime, signals
from experiments.run.backends import cpu_description
from experiments.run.cli import fail
from experiments.run.config import ConfigError
from experiments.run.flags import NON_NEGATIVE, POSITIVE, Parser, add_runtime_flags
from experiments.run.rundir import write_json
from numpy_ref.corpus import CorpusError, CorpusUnavailableError, find_time_machine

CORPUS_MB = 100  # the text of the corpus figures in a full run


IMPLS = ("numpy", "jax-bptt", "jax-autodiff", "torch", "torch-scratch")


@dataclass
class Result:
    config: str
    impl: str
    step_ms: float  # median
    best_ms: float  # fastest step: the least disturbed figure on a shared machine
    tokens_per_sec: float
    compile_s: float | None = None  # JAX: the first step, cold (empty persistent cache)
    warm_s: float | None = None  # JAX: the first step of a second run (from the cache)
    cpu_ms: float | None = None  # median process CPU time of a step (every thread)
    cpu_vs_torch: float | None = None  # PyTorch's cpu_ms / this one's
    vs_numpy: float | None = None
    vs_torch: float | None = None


def summarize(
    config: str,
    times: dict[str, list[float]],
    compile_s: dict[str, float],
    cpu_times: dict[str, list[float]] | None = None,
) -> list[Result]:
    """One :class:`Result` per implementation: median and best step, tokens/s, ratios; with
    ``cpu_times``, the median CPU time of a step and the ratio of those to PyTorch's."""
    results = []
    for impl, ts in times.items():
        median = statistics.median(ts)
        results.append(
            Result(
                config,
                impl,
                1e3 * median,
                1e3 * min(ts),
                BATCH * STEPS / median,
                compile_s.get(impl),
            )
        )
        if cpu_times and impl in cpu_times:
            results[-1].cpu_ms = 1e3 * statistics.median(cpu_times[impl])
    by_impl = {r.impl: r for r in results}
    for r in results:
        if "numpy" in by_impl:
            r.vs_numpy = r.tokens_per_sec / by_impl["numpy"].tokens_per_sec
        if "torch" in by_impl:
            r.vs_torch = r.tokens_per_sec / by_impl["torch"].tokens_per_sec
            torch_cpu = by_impl["torch"].cpu_ms
            if r.cpu_ms and torch_cpu:
                r.cpu_vs_torch = torch_cpu / r.cpu_ms
    return results


def bench_config(
    config: BenchConfig, impls: list[str], warmup: int, repeats: int, device: str = "cpu"
) -> list[Result]:
    """Median step time of every implementation on one configuration (module docstring), and
    the cold and warm compile time of each JAX step."""
    spec = config.spec()
    first_steps = {
        impl: compile_times(spec, impl.removeprefix("jax-"), device)
        for impl in impls
        if impl.startswith("jax")
    }
    cpu_times: dict[str, list[float]] = {}
    times, _ = measure(make_steps(spec, impls, device), warmup, repeats, cpu_times=cpu_times)
    cold = {i: seconds for i, (seconds, _) in first_steps.items()}
    results = summarize(config.name, times, cold, cpu_times)
    for r in results:
        r.warm_s = first_steps[r.impl][1] if r.impl in first_steps else None
    return results


def environment(device: str = "cpu") -> dict[str, Any]:
    import jax
    import jaxlib
    import numpy as np
    import optax

    from rnn_jax import get_device

    env: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": cpu_description(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "jax_device": str(get_device(device)),
    }
    try:
        import torch
    except ImportError:
        env["torch"] = None
    else:
        env["torch"] = torch.__version__
        if device == "gpu" and torch.cuda.is_available():
            env["torch_device"] = (
                f"{torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}"
            )
    env["threads"] = runtime.thread_counts()
    return env


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _seconds(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def format_table(results: list[Result]) -> str:
    header = (
        "config",
        "impl",
        "step ms",
        "best ms",
        "tokens/s",
        "vs numpy",
        "vs torch",
        "cpu ms",
        "cpu vs torch",
        "compile s",
        "warm s",
    )
    rows = [header]
    for r in results:
        cpu = "" if r.cpu_ms is None else f"{r.cpu_ms:.2f}"
        rows.append(
            (
                r.config,
                r.impl,
                f"{r.step_ms:.2f}",
                f"{r.best_ms:.2f}",
                f"{r.tokens_per_sec:,.0f}",
                _ratio(r.vs_numpy),
                _ratio(r.vs_torch),
                cpu,
                _ratio(r.cpu_vs_torch),
                _seconds(r.compile_s),
                _seconds(r.warm_s),
            )
        )
    return text_table(rows, left=2)


def check_writable(path: str) -> Path:
    """``path`` as a file that can be written, or ConfigError now (not after the benchmark)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ConfigError(f"--json {path} is a folder: give a file name")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"--json {path}: cannot write in {folder}: choose another path")
    return target


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"must be member counts as 1,4,16, got {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--impls", nargs="+", default=None, choices=IMPLS)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where JAX and PyTorch run (numpy: CPU only, left out on a GPU)",
    )
    parser.add_argument("--repeats", type=POSITIVE, default=50, help="timed steps per impl")
    parser.add_argument("--warmup", type=NON_NEGATIVE, default=3, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="--repeats 10 --warmup 1, no corpus")
    parser.add_argument(
        "--corpus-mb",
        type=NON_NEGATIVE,
        default=None,
        metavar="MB",
        help=f"also time loading a MB MB text (default {CORPUS_MB}, 0 with --quick; 0: skip)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_runtime_flags(parser)
    parser.add_argument(
        "--population",
        metavar="1,4,16",
        type=_counts,
        help="instead: a population of each size against PyTorch's runs in turn "
        "(experiments/benchmarks/bench_population.py)",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="instead: whole commands against their steps, jax, numpy and torch "
        "(experiments/benchmarks/end_to_end.py)",
    )
    parser.add_argument(
        "--epochs",
        type=POSITIVE,
        default=100,
        help="with --end-to-end: each command's epochs (default 100)",
    )
    parser.add_argument(
        "--members",
        type=NON_NEGATIVE,
        default=16,
        help="with --end-to-end: the JAX population's size (default 16; 0: none)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 10, 1
    if args.corpus_mb is None:
        args.corpus_mb = 0 if args.quick else CORPUS_MB
    if args.json:
        check_writable(args.json)
    return args


def default_impls(device: str, torch_installed: bool) -> list[str]:
    impls = (
        ["jax-bptt", "jax-autodiff"] if device == "gpu" else ["numpy", "jax-bptt", "jax-autodiff"]
    )
    return impls + (["torch", "torch-scratch"] if torch_installed else [])


def main(argv: list[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143 (a
    temporary corpus removed)."""
    prog = "experiments.bench"
    with signals.stopping(prog):
        return _main(argv, prog)


def _main(argv: list[str] | None, prog: str) -> int:
    try:
        args = parse_args(argv)
        settings = runtime.configure(args)
        try:
            env = environment(args.device)
        except ValueError as err:  # rnn_jax's DeviceError: no such device here
            raise ConfigError(f"--device {args.device}: {getattr(err, 'reason', err)}") from None
        if env["torch"] is None and any(i.startswith("torch") for i in args.impls or ()):
            raise ConfigError(
                "--impls torch / torch-scratch need PyTorch: .venv/bin/pip install -e '.[torch]'"
            )
        if args.device == "gpu" and "numpy" in (args.impls or ()):
            raise ConfigError("--device gpu: numpy runs on the CPU only; leave it out of --impls")
        if args.corpus_mb and not args.population:  # its text is the book's: found before timing
            from experiments.benchmarks.bench_corpus import check_space

            check_space(args.corpus_mb, None, "--corpus-mb")
            find_time_machine()
    except (CorpusError, CorpusUnavailableError) as err:
        return fail(prog, f"--corpus-mb repeats the book's text: {err} Or: --corpus-mb 0.")
    except (ConfigError, RuntimeError) as err:
        return fail(prog, str(err))
    impls = args.impls or default_impls(args.device, env["torch"] is not None)
    load = ", ".join(f"{x:.2f}" for x in env["load_average"])
    print(f"{env['date']}  {env['machine']}, load average {load} (1, 5, 15 min)")
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "jax", "jaxlib", "optax"))
    print(
        f"{versions}, torch {env['torch'] or 'not installed'}; JAX on {env['jax_device']}"
        + (f"; PyTorch on {env['torch_device']}" if "torch_device" in env else "")
    )
    threads = ", ".join(f"{k} {v}" for k, v in env["threads"].items())
    print(
        f"threads: {threads} ({settings['threads']}, from {settings['policy']}); "
        f"compile cache {settings['compile_cache'] or 'off'}; "
        f"malloc {settings['malloc']}"
    )
    if args.end_to_end:
        from experiments.benchmarks import end_to_end

        return end_to_end.main(args, env, prog)
    if args.population:
        from experiments.benchmarks import bench_population

        return bench_population.main(args, env)
    print(
        f"B={BATCH} T={STEPS} V={VOCAB}, lr={LR}, theta={THETA}, float32; median of "
        f"{args.repeats} timed steps after {args.warmup} warm-up steps, implementations "
        f"interleaved in blocks of {BLOCK} after {SETTLE} untimed\n"
    )
    results: list[Result] = []
    for name in args.configs:
        config = CONFIGS[name]
        spec = config.spec()
        config_results = bench_config(config, impls, args.warmup, args.repeats, args.device)
        results += config_results
        print(f"{name}: {spec.kind} H={spec.num_hiddens} L={spec.num_layers} ({config.note})")
        print(format_table(config_results) + "\n", flush=True)
    corpus = None
    if args.corpus_mb:
        from experiments.benchmarks.bench_corpus import bench_corpus, format_result

        corpus = bench_corpus(args.corpus_mb)
        print(f"corpus: {args.corpus_mb} MB (experiments/bench_corpus.py)")
        print(format_result(corpus), flush=True)
    if args.json:
        try:
            found = {"results": [asdict(r) for r in results], "corpus": corpus}
            write_json(args.json, {"environment": env, "settings": settings, **found})
        except OSError as err:
            return fail(prog, f"--json {args.json}: {err.strerror or err}", 1)
    return 0
