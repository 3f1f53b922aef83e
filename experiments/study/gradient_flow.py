"""How far back in time the gradient reaches: ``‖∂L/∂H_t‖`` for t = T, ..., 1, rnn, gru and lstm.

python -m experiments.gradient_flow [--steps T] [--hidden H] [--batch-size B] [--seed S]
    [--scales SIGMA ...] [--from RUN_DIR ...] [--every K] [--out FILE.png] [--data FILE]

(the figure goes to ``runs/gradient_flow.png`` unless ``--out`` says otherwise)

d2l 8.7 (backpropagation through time): the gradient that a loss at step T sends to the hidden
state ``H_t`` is a product of ``T - t`` Jacobians ``∂H_s/∂H_(s-1)``, so its size changes
geometrically with the distance: it vanishes when they shrink vectors, explodes when they stretch
them. This script measures it on one minibatch of the book's data (sequential partitioning, the
zero initial state), from numpy_ref's hand-written BPTT, which holds every step's gradient:
:func:`numpy_ref.models.layer_backward` returns ``dH``, the total gradient with respect to every
``H_t`` (B1). Two losses:

- ``L``, the mean cross-entropy over all T steps, what training differentiates: ``H_t`` gets the
  term of its own step plus what comes back from the later ones;
- ``ℓ_T``, the last step's cross-entropy alone: the pure long-range signal, which reaches ``H_t``
  only through ``T - t`` steps.

At initialisation (``--scales``, the weights' sigma, one column of the figure each): with the
book's 0.01 every gate sits at sigmoid(0) = 1/2 and the RNN's path back through one step,
``diag(1 - H_t²) W_hh^T``, shrinks a vector by about sigma·√H (0.16 for H = 256), while the
LSTM's memory path multiplies by the forget gate, 1/2, and the GRU's direct path by the update
gate, 1/2: all vanish, the RNN by far the fastest. With sigma·√H above 1 (sigma 0.1, H = 256)
the RNN's gradient explodes while the gated cells' still decays. ``--from RUN_DIR`` measures the
trained models of run directories instead (their checkpoint; the top layer of a deep one).

Prints a table (every K steps) and writes a figure: one column per scale (or one for the runs),
the mean loss on top, the last step's loss below, log scale. Exit code 2 for bad input (one line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.run import runtime, signals
from experiments.run.cli import fail
from experiments.run.config import ConfigError
from experiments.run.flags import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, Parser
from experiments.run.rundir import CHECKPOINT, save_figure
from numpy_ref.checkpoint import load_checkpoint
from numpy_ref.data import load_data_time_machine
from numpy_ref.models import flat_targets, forward_with_cache, layer_backward, softmax_cross_entropy
from numpy_ref.spec import KINDS, ModelSpec, Params, begin_state, init_params, map_params
from numpy_ref.vocab import Vocab

BOOK_SIGMA = 0.01
DEFAULT_OUT = "runs/gradient_flow.png"  # like every command, under runs/
VOCAB_AT_MOST = 100  # for the memory check before the corpus is read (the book's has 28)


@dataclass(frozen=True)
class Flow:
    """One model's gradient norms on one minibatch, index ``t - 1`` for step t (T,) each.

    Attributes:
        label: the curve's name: the kind, or the run directory's name, kind and epoch; its
            first word heads the table's column.
        mean_loss: ``‖∂L/∂H_t‖_F`` for ``L`` the mean cross-entropy over every step.
        last_loss: ``‖∂ℓ_T/∂H_t‖_F`` for ``ℓ_T`` the last step's mean cross-entropy alone.
    """

    label: str
    mean_loss: np.ndarray
    last_loss: np.ndarray


def hidden_gradient_norms(
    spec: ModelSpec, params: Params, X: np.ndarray, Y: np.ndarray, label: str = ""
) -> Flow:
    """``‖∂L/∂H_t‖`` and ``‖∂ℓ_T/∂H_t‖`` of the top layer for t = 1..T, from the zero state.

    Args:
        spec, params: the model (computed in float64 whatever the parameters' dtype).
        X, Y: int (B, T), one minibatch.
        label: the :class:`Flow`'s label (default the kind).
    """
    params = map_params(lambda a: np.asarray(a, np.float64), params)
    state = begin_state(spec, X.shape[0], np.float64)
    logits, _, cache = forward_with_cache(spec, params, X, state)
    T, B, V = logits.shape
    _, dlogits_mean = softmax_cross_entropy(logits.reshape(T * B, V), flat_targets(Y, X, V))
    dlogits_last = np.zeros_like(logits)  # (T, B, V): only the last step's loss
    _, dlogits_last[-1] = softmax_cross_entropy(logits[-1], Y[:, -1])
    top = params["layers"][-1], cache["steps"][-1]  # the layer whose H_t feed the output layer
    norms = []
    for dlogits in (dlogits_mean.reshape(T, B, V), dlogits_last):
        dH_out = dlogits @ params["W_hq"].T  # (O1') (T, B, H)
        *_, dH = layer_backward(spec.cell, *top, dH_out)  # dH (T, B, H)
        norms.append(np.linalg.norm(dH.reshape(T, -1), axis=1))
    return Flow(label or spec.kind, *norms)


def minibatch(
    batch_size: int, num_steps: int, seed: int, path: str | None = None
) -> tuple[np.ndarray, np.ndarray, Vocab]:
    """The first minibatch of sequential partitioning over the whole text, and the vocabulary."""
    loader, vocab = load_data_time_machine(
        batch_size, num_steps, max_tokens=-1, seed=seed, path=path
    )
    X, Y = next(iter(loader))
    return X, Y, vocab


def flows_at_init(
    X: np.ndarray, Y: np.ndarray, vocab_size: int, num_hiddens: int, sigma: float, seed: int
) -> list[Flow]:
    """One :class:`Flow` per kind (the book's GRU), weights N(0, sigma²) from ``seed``."""
    flows = []
    for kind in KINDS:
        spec = ModelSpec(kind, vocab_size, num_hiddens)
        flows.append(hidden_gradient_norms(spec, init_params(spec, seed, np.float64, sigma), X, Y))
    return flows


def flows_of_runs(
    run_dirs: Sequence[str], num_steps: int, batch_size: int, seed: int, path: str | None = None
) -> list[Flow]:
    """One :class:`Flow` per run directory, from its checkpoint, on one minibatch of the text."""
    X, Y, vocab = minibatch(batch_size, num_steps, seed, path)
    flows = []
    for run_dir in run_dirs:
        ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT)
        if ckpt.vocab != vocab:
            raise ConfigError(
                f"--from {run_dir}: its vocabulary is not the corpus's; pass the text it was "
                f"trained on with --data"
            )
        label = f"{Path(run_dir).resolve().name} ({ckpt.spec.kind}, epoch {ckpt.epoch})"
        flows.append(hidden_gradient_norms(ckpt.spec, ckpt.params, X, Y, label))
    return flows


# --- output ------------------------------------------------------------------------------------


def table(title: str, flows: Sequence[Flow], every: int) -> list[str]:
    """The norms at t = T, T - every, ..., 1: the mean loss's columns, then the last step's."""
    T = len(flows[0].mean_loss)
    steps = sorted({*range(T, 0, -every), 1}, reverse=True)
    names = [f.label.split()[0] for f in flows]
    width = max(9, *(len(n) + 1 for n in names))
    lines = [
        title,
        f"{'':>5}  {'‖∂L/∂H_t‖, L the mean loss':<{width * len(flows)}}  "
        f"‖∂ℓ_T/∂H_t‖, ℓ_T the last step's loss",
    ]
    header = "".join(f"{n:>{width}}" for n in names)
    lines.append(f"{'t':>5}  {header}  {header}")
    for t in steps:
        mean = "".join(f"{f.mean_loss[t - 1]:>{width}.2e}" for f in flows)
        last = "".join(f"{f.last_loss[t - 1]:>{width}.2e}" for f in flows)
        lines.append(f"{t:>5}  {mean}  {last}")
    return lines


def plot(panels: Sequence[tuple[str, Sequence[Flow]]], path: str | Path) -> None:
    """One column per panel (a scale, or the runs): the mean loss on top, the last step's below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 6.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(panels), sharex=True, squeeze=False)
    rows = (
        ("mean_loss", "‖∂L/∂H_t‖, L the mean loss"),
        ("last_loss", "‖∂ℓ_T/∂H_t‖, ℓ_T the last step's"),
    )
    for column, (title, flows) in enumerate(panels):
        for row, (attr, what) in enumerate(rows):
            ax = axes[row][column]
            for i, flow in enumerate(flows):
                norms = getattr(flow, attr)
                ax.semilogy(np.arange(1, len(norms) + 1), norms, color=f"C{i}", label=flow.label)
            low, high = ax.get_ylim()
            if high < 100 * low:  # at least two decades, so that a flat curve looks flat
                middle = np.sqrt(low * high)
                ax.set_ylim(middle / 10, middle * 10)
            ax.set_title(title if row == 0 else "", fontsize=10)
            ax.grid(True, alpha=0.3)
            if column == 0:
                ax.set_ylabel(what, fontsize=9)
        axes[1][column].set_xlabel(f"step t (the gradient flows from T = {len(norms)} to 1)")
        axes[0][column].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


# --- the command line --------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="python -m experiments.gradient_flow", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=POSITIVE, default=100, help="T, steps back (default 100)")
    parser.add_argument("--hidden", type=POSITIVE, default=256, help="H at init (default 256)")
    parser.add_argument("--batch-size", type=POSITIVE, default=32, help="B (default 32)")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0, help="weights and minibatch")
    scales = "init sigma, one column each (default: the book's 0.01, and 0.1)"
    parser.add_argument("--scales", type=POSITIVE_NUMBER, nargs="+", metavar="SIGMA", help=scales)
    runs = "trained models instead: run directories with a checkpoint.npz"
    parser.add_argument("--from", dest="runs", nargs="+", metavar="RUN_DIR", help=runs)
    parser.add_argument("--every", type=POSITIVE, help="table rows every K steps (default T/10)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"the figure, PNG (default {DEFAULT_OUT})"
    )
    parser.add_argument("--data", default=None, help="corpus file (default: the book's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143."""
    prog = "experiments.gradient_flow"
    with signals.stopping(prog):
        return _main(argv, prog)


def check_out(out: str) -> None:
    """``--out`` as a file that can be written, or ConfigError now (not after the work).

    The default's folder, ``runs/``, is made when the figure is written, as every run makes it;
    a folder given with ``--out`` must exist.
    """
    folder = Path(out).parent
    if out == DEFAULT_OUT and not folder.exists():
        return
    if Path(out).is_dir():
        raise ConfigError(
            f"--out {out} is a folder: give a file name, e.g. {Path(out) / 'gradient_flow.png'}"
        )
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: cannot write in {folder}: choose another path")


def _main(argv: Sequence[str] | None, prog: str) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_out(args.out)
        sizes = f"--hidden {args.hidden} --batch-size {args.batch_size} --steps {args.steps}"
        needed = max(
            runtime.model_memory(kind, VOCAB_AT_MOST, args.hidden, 1, args.batch_size, args.steps)
            for kind in KINDS
        )
        runtime.check_available(needed, sizes)  # before any model is built
        if args.runs and args.scales:
            raise ConfigError(
                "--scales sets the weights of new models, --from reads trained "
                "ones: give one or the other"
            )
        if args.runs:
            flows = flows_of_runs(args.runs, args.steps, args.batch_size, args.seed, args.data)
            panels = [("trained (--from)", flows)]
        else:
            X, Y, vocab = minibatch(args.batch_size, args.steps, args.seed, args.data)
            panels = [
                (
                    f"init σ = {sigma:g}, H = {args.hidden}",
                    flows_at_init(X, Y, len(vocab), args.hidden, sigma, args.seed),
                )
                for sigma in args.scales or (BOOK_SIGMA, 0.1)
            ]
    except (ConfigError, OSError, RuntimeError, ValueError) as err:
        return fail(prog, str(err))
    every = args.every or max(1, args.steps // 10)
    for title, flows in panels:
        print("\n".join(table(f"{title}, B = {args.batch_size}, T = {args.steps}:", flows, every)))
        print()
    try:
        Path(args.out).parent.mkdir(exist_ok=True)  # runs/ for the default; else it exists
        plot(panels, args.out)
    except OSError as err:
        return fail(prog, f"cannot write --out {args.out}: {err}", 1)
    print(f"figure: {args.out}")
    return 0
