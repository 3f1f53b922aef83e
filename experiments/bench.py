"""Tokens per second of one full training step, every implementation side by side.

    python -m experiments.bench                         # every configuration, ~2-3 minutes
    python -m experiments.bench --quick                 # fewer repeats, ~1 minute
    python -m experiments.bench --configs lstm --repeats 50 --json bench.json

A step is what one minibatch of training costs: forward, backward, clipping to theta = 1, SGD
update, on a (B, T) = (32, 35) minibatch of a V = 28 vocabulary, as in the book. Compared:

- ``numpy``: numpy_ref's ``loss_and_grads`` + ``clip_by_global_norm`` + ``sgd``;
- ``jax-bptt`` / ``jax-autodiff``: ``rnn_jax.make_train_step`` (one jit region, donated
  buffers) with the hand-written backward or with ``jax.grad`` through the scan;
- ``torch``: the book's concise model, ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` on one-hot inputs, a
  ``Linear`` output, ``CrossEntropyLoss``, ``clip_grad_norm_``, ``torch.optim.SGD``;
- ``torch-scratch`` (rnn only): the book's from-scratch RNN (d2l 8.5): a Python loop over time of
  ``tanh(X_t W_xh + H W_hh + b_h)`` on one-hot inputs, autograd, its ``grad_clipping``, its
  ``sgd``.

Each step is timed alone (JAX: until the loss is ready). The implementations of a configuration
take turns in blocks of 10 timed steps, each after 3 untimed steps, so that a disturbance
on a shared machine hits them alike while the thread pools that NumPy's BLAS, XLA and PyTorch
keep spinning after a call do not slow down the next implementation's first steps; the figure is
the median over ``--repeats`` timed steps, after ``--warmup`` untimed steps. ``compile`` is the
wall time of the first call of the jitted step (tracing, XLA compilation and one step). PyTorch
keeps its default thread count (printed). The GRU is the PyTorch variant (reset gate after the
recurrent product) so that every implementation computes the same function.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.backends import cpu_description
from experiments.cli import fail
from experiments.config import ConfigError
from experiments.flags import NON_NEGATIVE, POSITIVE, Parser
from experiments.rundir import write_json
from numpy_ref import models as np_models
from numpy_ref import optim as np_optim
from numpy_ref.spec import ModelSpec, begin_state, init_params

BATCH, STEPS, VOCAB, LR, THETA = 32, 35, 28, 1.0, 1.0
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
DEFAULT_CONFIGS = ("rnn-scratch", "rnn", "gru", "lstm")
IMPLS = ("numpy", "jax-bptt", "jax-autodiff", "torch", "torch-scratch")


@dataclass
class Result:
    config: str
    impl: str
    step_ms: float  # median
    best_ms: float  # fastest step: the least disturbed figure on a shared machine
    tokens_per_sec: float
    compile_s: float | None = None
    vs_numpy: float | None = None
    vs_torch: float | None = None


Step = Callable[[], Any]  # runs one training step, returns when it is done


# --- the implementations -------------------------------------------------------------------------


def numpy_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray) -> Step:
    params = init_params(spec, 0)
    state = begin_state(spec, BATCH)

    def step() -> None:
        nonlocal params
        _, grads, _ = np_models.loss_and_grads(spec, params, X, Y, state)
        params = np_optim.sgd(params, np_optim.clip_by_global_norm(grads, THETA), LR)

    return step


def jax_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray, grad_mode: str) -> Step:
    import rnn_jax

    init_opt_state, train_step = rnn_jax.make_train_step(spec, LR, THETA, grad_mode)
    params = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    carry = [params, init_opt_state(params)]
    state = rnn_jax.begin_state(spec, BATCH)

    def step() -> None:
        params, opt_state, loss, _, _ = train_step(*carry, X, Y, state)
        carry[:] = [params, opt_state]
        loss.block_until_ready()

    return step


def torch_concise_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray) -> Step:
    import torch
    from torch import nn

    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[spec.kind]
    rnn = layer(VOCAB, spec.num_hiddens, spec.num_layers)
    linear = nn.Linear(spec.num_hiddens, VOCAB)
    parameters = [*rnn.parameters(), *linear.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    shape = (spec.num_layers, BATCH, spec.num_hiddens)

    def step() -> None:
        state = torch.zeros(shape)
        if spec.kind == "lstm":
            state = (state, torch.zeros(shape))
        inputs = nn.functional.one_hot(Xt.T, VOCAB).float()  # (T, B, V)
        outputs, _ = rnn(inputs, state)
        logits = linear(outputs.reshape(-1, spec.num_hiddens))  # (T*B, V)
        loss = loss_fn(logits, Yt.T.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, THETA)
        optimizer.step()

    return step


def torch_scratch_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray) -> Step:
    """The book's RNNModelScratch, train_epoch_ch8 body, grad_clipping and sgd (d2l 8.5)."""
    import torch
    from torch.nn import functional

    start = init_params(spec, 0)
    layer = start["layers"][0]
    arrays = (layer["W_xh"], layer["W_hh"], layer["b_h"], start["W_hq"], start["b_q"])
    params = [torch.tensor(a, requires_grad=True) for a in arrays]
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def rnn(inputs, H):
        W_xh, W_hh, b_h, W_hq, b_q = params
        outputs = []
        for X_t in inputs:
            H = torch.tanh(torch.mm(X_t, W_xh) + torch.mm(H, W_hh) + b_h)
            outputs.append(torch.mm(H, W_hq) + b_q)
        return torch.cat(outputs, dim=0), H

    def step() -> None:
        H = torch.zeros((BATCH, spec.num_hiddens))
        y_hat, _ = rnn(functional.one_hot(Xt.T, VOCAB).float(), H)
        loss = functional.cross_entropy(y_hat, Yt.T.reshape(-1)).mean()
        for param in params:
            param.grad = None
        loss.backward()
        norm = torch.sqrt(sum(torch.sum(param.grad**2) for param in params))
        if norm > THETA:
            for param in params:
                param.grad[:] *= THETA / norm
        with torch.no_grad():
            for param in params:
                param -= LR * param.grad / 1

    return step


# --- measuring -----------------------------------------------------------------------------------


def measure(
    steps: dict[str, Step],
    warmup: int,
    repeats: int,
    block: int = BLOCK,
    settle: int = SETTLE,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Time every step (module docstring): the first call alone, ``warmup`` untimed calls, then
    ``repeats`` timed calls each, in turns of ``block`` after ``settle`` untimed calls.

    Returns:
        ``(times, first)``: the seconds of every timed call and of the first call, per step.
    """

    def timed(step: Step) -> float:
        start = clock()
        step()
        return clock() - start

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
                times[name].append(timed(steps[name]))
    return times, first


def summarize(
    config: str, times: dict[str, list[float]], compile_s: dict[str, float]
) -> list[Result]:
    """One :class:`Result` per implementation: median and best step, tokens/s, ratios."""
    results = []
    for impl, ts in times.items():
        median = statistics.median(ts)
        results.append(
            Result(config, impl, 1e3 * median, 1e3 * min(ts), BATCH * STEPS / median,
                   compile_s.get(impl))
        )  # fmt: skip
    by_impl = {r.impl: r for r in results}
    for r in results:
        if "numpy" in by_impl:
            r.vs_numpy = r.tokens_per_sec / by_impl["numpy"].tokens_per_sec
        if "torch" in by_impl:
            r.vs_torch = r.tokens_per_sec / by_impl["torch"].tokens_per_sec
    return results


def bench_config(config: BenchConfig, impls: list[str], warmup: int, repeats: int) -> list[Result]:
    """Median step time of every implementation on one configuration (module docstring)."""
    spec = config.spec()
    rng = np.random.default_rng(0)
    X = rng.integers(0, VOCAB, (BATCH, STEPS))
    Y = rng.integers(0, VOCAB, (BATCH, STEPS))
    makers = {
        "numpy": lambda: numpy_step(spec, X, Y),
        "jax-bptt": lambda: jax_step(spec, X, Y, "bptt"),
        "jax-autodiff": lambda: jax_step(spec, X, Y, "autodiff"),
        "torch": lambda: torch_concise_step(spec, X, Y),
        "torch-scratch": lambda: torch_scratch_step(spec, X, Y),
    }
    scratch_ok = spec.kind == "rnn" and spec.num_layers == 1  # the book's scratch RNN only
    steps = {i: makers[i]() for i in impls if i != "torch-scratch" or scratch_ok}
    times, first = measure(steps, warmup, repeats)
    compile_s = {impl: s for impl, s in first.items() if impl.startswith("jax")}
    return summarize(config.name, times, compile_s)


def environment() -> dict[str, Any]:
    import jax
    import jaxlib
    import optax

    env: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": cpu_description(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "jax_device": str(jax.devices()[0]),
    }
    try:
        import torch
    except ImportError:
        env["torch"] = None
    else:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    return env


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def format_table(results: list[Result]) -> str:
    header = ("config", "impl", "step ms", "best ms", "tokens/s", "vs numpy", "vs torch",
              "compile s")  # fmt: skip
    rows = [header]
    for r in results:
        compile_text = "" if r.compile_s is None else f"{r.compile_s:.2f}"
        rows.append((r.config, r.impl, f"{r.step_ms:.2f}", f"{r.best_ms:.2f}",
                     f"{r.tokens_per_sec:,.0f}",
                     _ratio(r.vs_numpy), _ratio(r.vs_torch), compile_text))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in pairs]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
    parser.add_argument("--repeats", type=POSITIVE, default=50, help="timed steps per impl")
    parser.add_argument("--warmup", type=NON_NEGATIVE, default=3, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="--repeats 10 --warmup 1")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--population", metavar="1,4,16", type=_counts,
                        help="instead: a population of each size against PyTorch's runs in turn "
                             "(experiments/bench_population.py)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 10, 1
    if args.json:
        check_writable(args.json)
    return args


def main(argv: list[str] | None = None) -> int:
    prog = "experiments.bench"
    try:
        args = parse_args(argv)
        env = environment()
        if env["torch"] is None and any(i.startswith("torch") for i in args.impls or ()):
            raise ConfigError("--impls torch / torch-scratch need PyTorch: "
                              "pip install -e '.[dev,torch]'")  # fmt: skip
    except ConfigError as err:
        return fail(prog, str(err))
    impls = args.impls or ["numpy", "jax-bptt", "jax-autodiff"]
    if args.impls is None and env["torch"] is not None:
        impls += ["torch", "torch-scratch"]
    print(f"{env['date']}  {env['machine']}")
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "jax", "jaxlib", "optax"))
    torch_text = "not installed" if env["torch"] is None else (
        f"{env['torch']} ({env['torch_threads']} threads, the default)")  # fmt: skip
    print(f"{versions}, torch {torch_text}; JAX on {env['jax_device']}")
    if args.population:
        from experiments import bench_population

        print(f"B={BATCH} T={STEPS} V={VOCAB}, float32; {bench_population.CHUNK} training steps "
              f"per call, median of {args.repeats} calls, interleaved\n")  # fmt: skip
        results = bench_population.bench_populations(
            args.configs, args.population, args.repeats, env["torch"] is not None
        )
        print(bench_population.format_table(results))
        if args.json:
            write_json(args.json, {"environment": env,
                                   "population": [asdict(r) for r in results]})  # fmt: skip
        return 0
    print(f"B={BATCH} T={STEPS} V={VOCAB}, lr={LR}, theta={THETA}, float32; median of "
          f"{args.repeats} timed steps after {args.warmup} warm-up steps, implementations "
          f"interleaved in blocks of {BLOCK} after {SETTLE} untimed\n")  # fmt: skip
    results: list[Result] = []
    for name in args.configs:
        config = CONFIGS[name]
        spec = config.spec()
        config_results = bench_config(config, impls, args.warmup, args.repeats)
        results += config_results
        print(f"{name}: {spec.kind} H={spec.num_hiddens} L={spec.num_layers} ({config.note})")
        print(format_table(config_results) + "\n", flush=True)
    if args.json:
        try:
            write_json(args.json, {"environment": env, "results": [asdict(r) for r in results]})
        except OSError as err:
            return fail(prog, f"--json {args.json}: {err.strerror or err}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
