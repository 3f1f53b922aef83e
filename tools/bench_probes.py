"""The small measurements behind docs/performance.md: where a step's time goes, and why.

    python -m tools.bench_probes profile --config lstm  # XLA's kernels of one JAX step
    python -m tools.bench_probes products               # (B2) in XLA, NumPy, PyTorch
    python -m tools.bench_probes recurrent              # a scan's small products
    python -m tools.bench_probes inputs                 # layer 0's input: gather, one-hot
    python -m tools.bench_probes sigmoid                # numpy_ref's sigmoid, two ways
    python -m tools.bench_probes compile --config lstm  # XLA compile time per LLVM level
    python -m tools.bench_probes versus --rev 33cbfa0   # rnn_jax then and now, PyTorch
    python -m tools.bench_probes malloc --config deep-lstm  # glibc's malloc, two ways

Every probe applies ``--threads`` like the other commands (default: half the cores) and times
its variants interleaved (``experiments.benchmarks.measure.measure``), medians in ms.

- ``profile``: ``jax.profiler`` traces 20 steps of ``rnn_jax.make_train_step`` (bptt) and sums
  the trace's events per XLA kernel: calls per step and ms per step, the kernels inside the
  scans (35 calls a step) apart from those that run once, YNNPACK's products (``ynn_fusion``)
  apart from XLA's own loop fusions.
- ``products``: the recurrent weights' gradient of the LSTM, ``H^T dA`` with H (N, H) = (1120,
  256), dA (1120, 1024): as XLA receives it from ``a.T @ b``, with the transpose written out
  first, NumPy, PyTorch.
- ``recurrent``: what a scan's products cost, the limit of every recurrent step here: 35
  dependent (32, 256) x (256, 1024) products (the LSTM's, 16.8 MFLOP each), every one of the
  four blocks of each used (summed, then a tanh), in XLA with the book's rows-major layout and
  with rnn_jax's features-major one (the state kept transposed), NumPy, PyTorch.
- ``inputs``: layer 0's ``A_x`` (T, B, 4H) = (35, 32, 1024) from a (28, 1024) table: XLA's gather
  of ``W_x + b`` stacked from the gates, and the one-hot product with the bias as a last row.
- ``sigmoid``: ``1 / (1 + exp(-x))`` guarded by ``where``, ``(1 + tanh(x / 2)) / 2`` and
  numpy_ref's (the plain form, its overflow warning silenced) on a (32, 768) float32 array.
- ``versus``: rnn_jax as it was at a git revision (``--rev``, default 33cbfa0, before issue 11)
  beside the working tree's, copied out of git into a temporary package, and PyTorch: each
  configuration's jax-bptt step (on the packed parameters where the revision has
  ``training.pack``, as its ``train_epoch`` trains them), interleaved, median and best.
- ``compile``: per XLA_FLAGS setting, a fresh subprocess with an empty persistent compilation
  cache (cold) and one more with the cache the first filled (warm): tracing and lowering, XLA's
  compilation (or loading from the cache), the first step.
- ``malloc``: the jax-bptt step and PyTorch's in a fresh process with glibc's default ``malloc``
  and in one with :func:`experiments.run.runtime.keep_freed_memory` (what every command sets), in
  turns: median and best ms, and the minor page faults of a step.
"""

from __future__ import annotations

import collections
import glob
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments.benchmarks.bench_steps import BATCH, STEPS, VOCAB, jax_step
from experiments.benchmarks.measure import CONFIGS, measure
from experiments.run import runtime
from experiments.run.flags import POSITIVE, Parser, add_runtime_flags
from tools.bench_fresh import compile_times, malloc

ROOT = Path(__file__).resolve().parents[1]
WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "$", "Pjit", "CommonPjRt", "while", "Execute")


def _report(times: dict[str, list[float]], flops: float | None = None) -> list[str]:
    lines = []
    for name, ts in times.items():
        median = statistics.median(ts)
        rate = f"  {flops / median / 1e9:6.1f} GFLOP/s" if flops else ""
        lines.append(f"{name:28s} {1e3 * median:8.3f} ms  (best {1e3 * min(ts):.3f}){rate}")
    return lines


def profile(config: str, steps: int = 20) -> list[str]:
    import jax

    spec = CONFIGS[config].spec()
    X = np.random.default_rng(0).integers(0, VOCAB, (BATCH, STEPS))
    step = jax_step(spec, X, X, "bptt")
    for _ in range(5):
        step()
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            for _ in range(steps):
                step()
        (trace,) = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        data = jax.profiler.ProfileData.from_file(trace)
    events: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if not event.name.startswith(WRAPPERS):
                    events[event.name][0] += 1
                    events[event.name][1] += event.duration_ns
    per_step = {k: (n / steps, ns / steps / 1e6) for k, (n, ns) in events.items()}
    in_scan = {k: v for k, v in per_step.items() if v[0] >= STEPS - 1}
    total = {
        "kernels in the scans (>= 1 call a time step)": sum(ms for _, ms in in_scan.values()),
        "  of which YNNPACK products": sum(
            ms for k, (_, ms) in in_scan.items() if k.startswith("ynn")
        ),
        "kernels once a step": sum(ms for k, (_, ms) in per_step.items() if k not in in_scan),
    }
    lines = [f"{config}: XLA kernels of one training step (jax-bptt), {steps} steps traced"]
    lines += [f"{name:45s} {ms:7.2f} ms/step" for name, ms in total.items()]
    lines.append(f"{'kernel':45s} {'calls/step':>10s} {'ms/step':>8s}")
    for name, (calls, ms) in sorted(per_step.items(), key=lambda kv: -kv[1][1])[:25]:
        lines.append(f"{name[:45]:45s} {calls:10.1f} {ms:8.3f}")
    return lines


def products(repeats: int) -> list[str]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    H_rows = rng.standard_normal((BATCH * STEPS, 256)).astype(np.float32)
    dA = rng.standard_normal((BATCH * STEPS, 1024)).astype(np.float32)
    Hj, dAj = jnp.asarray(H_rows), jnp.asarray(dA)
    plain = jax.jit(lambda a, b: a.T @ b)
    written = jax.jit(lambda a, b: lax.optimization_barrier(a.T) @ b)
    steps = {
        "XLA a.T @ b": lambda: plain(Hj, dAj).block_until_ready(),
        "XLA transpose written out": lambda: written(Hj, dAj).block_until_ready(),
        "NumPy a.T @ b": lambda: H_rows.T @ dA,
    }
    try:
        import torch
    except ImportError:
        pass
    else:
        Ht, dAt = torch.from_numpy(H_rows), torch.from_numpy(dA)
        steps["PyTorch a.T @ b"] = lambda: Ht.T @ dAt
    times, _ = measure(steps, 3, repeats)
    flops = 2.0 * BATCH * STEPS * 256 * 1024
    return ["(B2) of the LSTM, H^T dA, (256, 1120) x (1120, 1024)", *_report(times, flops)]


def recurrent(repeats: int) -> list[str]:
    """T = 35 dependent (32, 256) x (256, 1024) products, as in an LSTM's forward scan."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    W = (0.01 * rng.standard_normal((256, 1024))).astype(np.float32)
    A = rng.standard_normal((STEPS, BATCH, 1024)).astype(np.float32)
    h0 = np.zeros((BATCH, 256), np.float32)
    Wj, WTj, Aj = jnp.asarray(W), jnp.asarray(np.ascontiguousarray(W.T)), jnp.asarray(A)

    def gates(a, axis):  # every gate's block used, as in an LSTM step (none can be left out)
        return jnp.tanh(sum(jnp.split(a, 4, axis=axis)))

    @jax.jit
    def rows_major(W, A, h0):  # h (B, H) @ W (H, 4H): the book's layout
        return lax.scan(lambda h, a: (gates(h @ W + a, 1), None), h0, A)[0]

    @jax.jit
    def features_major(WT, AT, h0T):  # W^T (4H, H) @ h^T (H, B): rnn_jax's layout
        return lax.scan(lambda hT, aT: (gates(WT @ hT + aT, 0), None), h0T, AT)[0]

    def numpy_loop() -> None:
        h = h0
        for a in A:
            h = np.tanh(sum(np.split(h @ W + a, 4, axis=1)))

    ATj, h0T = jnp.asarray(np.ascontiguousarray(A.transpose(0, 2, 1))), jnp.asarray(h0.T.copy())
    steps = {
        "XLA h @ W": lambda: rows_major(Wj, Aj, h0).block_until_ready(),
        "XLA W^T h^T": lambda: features_major(WTj, ATj, h0T).block_until_ready(),
        "NumPy h @ W": numpy_loop,
    }
    try:
        import torch
    except ImportError:
        pass
    else:
        Wt, At, ht = torch.from_numpy(W), torch.from_numpy(A), torch.from_numpy(h0)

        def torch_loop() -> None:
            h = ht
            for a in At:
                h = torch.tanh(sum(torch.split(h @ Wt + a, 256, dim=1)))

        steps["PyTorch h @ W"] = torch_loop
    times, _ = measure(steps, 3, repeats)
    flops = 2.0 * STEPS * BATCH * 256 * 1024
    return [
        "35 dependent (32, 256) x (256, 1024) products, each gate's block summed, tanh",
        *_report(times, flops),
    ]


def inputs(repeats: int) -> list[str]:
    import jax
    import jax.numpy as jnp

    def gather_rows(W_x, b, tokens):  # rnn_jax's layer 0 until 98024bd: [one-hot | 1] [W_x ; b]
        hot = jax.nn.one_hot(tokens, W_x.shape[0], dtype=W_x.dtype)
        ones = jnp.ones((*hot.shape[:-1], 1), hot.dtype)
        return jnp.concatenate([hot, ones], axis=-1) @ jnp.concatenate([W_x, b[None]], axis=0)

    rng = np.random.default_rng(0)
    parts = [jnp.asarray(rng.standard_normal((VOCAB, 256)).astype(np.float32)) for _ in range(4)]
    biases = [jnp.asarray(rng.standard_normal(256).astype(np.float32)) for _ in range(4)]
    tokens = jnp.asarray(rng.integers(0, VOCAB, (STEPS, BATCH)))
    gather = jax.jit(lambda p, b, x: (jnp.concatenate(p, -1) + jnp.concatenate(b))[x])
    onehot = jax.jit(lambda p, b, x: gather_rows(jnp.concatenate(p, -1), jnp.concatenate(b), x))
    steps = {
        "XLA gather of W_x + b": lambda: gather(parts, biases, tokens).block_until_ready(),
        "one-hot product, bias row": lambda: onehot(parts, biases, tokens).block_until_ready(),
    }
    times, _ = measure(steps, 3, repeats)
    return ["layer 0's A_x (35, 32, 1024) from the gates' (28, 256) arrays", *_report(times)]


def sigmoid(repeats: int) -> list[str]:
    from numpy_ref.cells import sigmoid as numpy_ref_sigmoid

    x = np.random.default_rng(0).standard_normal((BATCH, 768)).astype(np.float32)

    def exp_form() -> np.ndarray:
        e = np.exp(-np.abs(x))
        r = 1.0 / (1.0 + e)
        return np.where(x >= 0, r, e * r)

    steps = {
        "guarded exp": exp_form,
        "(1 + tanh(x/2)) / 2": lambda: 0.5 + 0.5 * np.tanh(0.5 * x),
        "numpy_ref's 1 / (1 + exp(-x))": lambda: numpy_ref_sigmoid(x),
    }
    times, _ = measure(steps, 20, repeats * 10)
    return ["numpy_ref sigmoid on (32, 768) float32", *_report(times)]


def versus(revision: str, configs: list[str], repeats: int) -> list[str]:
    """rnn_jax as it was at ``revision`` (git) against the working tree's, PyTorch beside them."""
    import importlib
    import re

    import jax

    from experiments.benchmarks.bench_steps import torch_concise_step
    from numpy_ref.spec import init_params

    name = "rnn_jax_at_" + re.sub(r"\W", "_", revision)
    folder = tempfile.mkdtemp(prefix="rnn-lm-versus-")
    package = Path(folder) / name
    package.mkdir()
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", revision, "rnn_jax/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in listed:
        text = subprocess.run(
            ["git", "show", f"{revision}:{path}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = re.sub(r"\brnn_jax\b", name, text)
        (package / Path(path).name).write_text(text, encoding="utf-8")
    sys.path.insert(0, folder)
    packages = {
        revision: importlib.import_module(name),
        "working tree": importlib.import_module("rnn_jax"),
    }

    def step_of(pkg, spec, X, Y):
        init, train_step = pkg.make_train_step(spec, 1.0, 1.0, "bptt")
        pack = getattr(sys.modules[f"{pkg.__name__}.training"], "pack", None)  # train_epoch's form
        start = init_params(spec, 0)
        params = pack(spec, start) if pack else pkg.to_jax(start, "cpu")
        carry, state = [params, init(params)], pkg.begin_state(spec, BATCH)
        Xd, Yd = jax.device_put((X, Y))

        def step() -> None:
            new, opt_state, loss, _, _ = train_step(*carry, Xd, Yd, state)
            carry[:] = [new, opt_state]
            loss.block_until_ready()

        return step

    lines = [f"jax-bptt at {revision} and in the working tree, and PyTorch: median (best) ms"]
    for config in configs:
        spec = CONFIGS[config].spec()
        rng = np.random.default_rng(0)
        X, Y = rng.integers(0, VOCAB, (BATCH, STEPS)), rng.integers(0, VOCAB, (BATCH, STEPS))
        steps = {label: step_of(pkg, spec, X, Y) for label, pkg in packages.items()}
        steps["torch"] = torch_concise_step(spec, X, Y)
        times, _ = measure(steps, 3, repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        best = {k: min(v) for k, v in times.items()}
        cells = [f"{k} {1e3 * med[k]:.2f} ({1e3 * best[k]:.2f})" for k in steps]
        ratios = [
            f"{k} {med['torch'] / med[k]:.2f}x ({best['torch'] / best[k]:.2f}x)" for k in packages
        ]
        lines.append(f"{config}: " + ", ".join(cells) + "; vs torch: " + ", ".join(ratios))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.bench_probes", description=__doc__.split("\n")[0])
    probes = (
        "profile",
        "products",
        "recurrent",
        "inputs",
        "sigmoid",
        "compile",
        "versus",
        "malloc",
    )
    parser.add_argument("probe", choices=probes)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="lstm")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=sorted(CONFIGS),
        default=None,
        help="versus: the configurations (default: every one)",
    )
    parser.add_argument("--rev", default="33cbfa0", help="versus: the git revision to compare")
    parser.add_argument("--repeats", type=POSITIVE, default=40)
    add_runtime_flags(parser)
    args = parser.parse_args(argv)
    settings = runtime.configure(args)
    print(
        f"threads {settings['threads']} ({settings['policy']}); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if args.probe == "profile":
        lines = profile(args.config)
    elif args.probe == "products":
        lines = products(args.repeats)
    elif args.probe == "recurrent":
        lines = recurrent(args.repeats)
    elif args.probe == "inputs":
        lines = inputs(args.repeats)
    elif args.probe == "sigmoid":
        lines = sigmoid(args.repeats)
    elif args.probe == "malloc":
        lines = malloc(args.config, settings["threads"], args.repeats)
    elif args.probe == "versus":
        lines = versus(args.rev, args.configs or list(CONFIGS), args.repeats)
    else:
        lines = compile_times(args.config, settings["threads"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
