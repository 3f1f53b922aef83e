"""Check numpy_ref's hand-written BPTT against finite differences and JAX; see a wrong derivation.

python -m experiments.gradcheck [--kind rnn|gru|lstm] [--gru-reset before|after] [--layers L]
    [--vocab V] [--hidden H] [--batch-size B] [--steps T] [--seed S] [--plant NAME] [--no-jax]

A small float64 model (:func:`numpy_ref.gradcheck.problem`: V=5, H=3, B=2, T=4 by default) and
one table, a row per parameter and per array of the initial state (``H_0``, ``C_0``): its shape,
its largest ``|analytic|`` element, the largest relative error of numpy_ref's gradient against
centred finite differences (:mod:`numpy_ref.gradcheck`: floor 1e-3, passes below 1e-6) and, when
JAX is installed, against ``jax.grad`` through the scan (``grad_mode="autodiff"``) and against
rnn_jax's own BPTT (``"bptt"``), both in float64 (``jax.enable_x64``); then the verdict.

``--plant NAME`` runs numpy_ref's backward with one term left out on purpose (the cell's step
backward wrapped by :func:`numpy_ref.gradcheck.planted_cell`): the rows that the missing term
feeds fail, the others pass, and which ones fail tells where the error is. ``--help`` lists the
plants of each cell.

Exit codes: 0 every row passes; 1 some row fails (a plant); 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.run import runtime, signals
from experiments.run.cli import fail
from experiments.run.config import ConfigError
from experiments.run.flags import NON_NEGATIVE, POSITIVE, Parser
from numpy_ref.cells import CELLS
from numpy_ref.gradcheck import (
    EPS,
    FLOOR,
    REL_TOL,
    GradCheck,
    Plant,
    analytic_gradients,
    check_model,
    compare,
    planted_cell,
    plants,
    problem,
    state_names,
)
from numpy_ref.spec import GRU_RESETS, KINDS, ModelSpec, Params, State, flatten_params

# --- the check ---------------------------------------------------------------------------------

JAX_MODES = {"autodiff": "jax.grad", "bptt": "jax bptt"}  # rnn_jax grad_mode -> column


def has_jax() -> bool:
    return importlib.util.find_spec("jax") is not None


def jax_gradients(
    spec: ModelSpec, params: Params, X: np.ndarray, Y: np.ndarray, state: State, grad_mode: str
) -> dict[str, np.ndarray]:
    """rnn_jax's gradient of the mean loss in float64, named like
    :func:`numpy_ref.gradcheck.analytic_gradients`: every parameter, then the initial state.

    The loss is optax's cross-entropy of rnn_jax's logits, so that JAX differentiates the whole
    of it, the recurrence by ``grad_mode`` (``"autodiff"`` or rnn_jax's ``"bptt"``).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from rnn_jax.device import to_jax
    from rnn_jax.models import apply

    with jax.enable_x64(True):

        def loss(params, state):
            logits, _ = apply(spec, params, jnp.asarray(X), state, grad_mode)  # (T, B, V)
            return optax.softmax_cross_entropy_with_integer_labels(logits, Y.T).mean()

        jstate = tuple(jnp.asarray(s, jnp.float64) for s in state)
        grads, dstate = jax.jit(jax.grad(loss, argnums=(0, 1)))(to_jax(params, "cpu"), jstate)
        named = {**flatten_params(grads), **dict(zip(state_names(spec), dstate, strict=True))}
        return {name: np.asarray(g) for name, g in named.items()}


@dataclass(frozen=True)
class Row:
    """One row of the table: numpy_ref against finite differences, and against each JAX mode."""

    check: GradCheck
    vs_jax: dict[str, GradCheck]

    @property
    def passed(self) -> bool:
        return self.check.passed and all(c.passed for c in self.vs_jax.values())


def run_check(
    spec: ModelSpec,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    state: State,
    plant: Plant | None = None,
    with_jax: bool = True,
) -> list[Row]:
    """The rows of the table (module docstring); ``plant`` corrupts numpy_ref's backward only.

    ``with_jax`` adds the comparisons with rnn_jax (JAX must be installed).
    """
    cell = planted_cell(spec.cell, plant) if plant else None
    analytic = analytic_gradients(spec, params, X, Y, state, cell)
    modes = JAX_MODES if with_jax else {}
    references = {mode: jax_gradients(spec, params, X, Y, state, mode) for mode in modes}
    return [
        Row(
            check,
            {
                mode: compare(check.name, ref[check.name], analytic[check.name])
                for mode, ref in references.items()
            },
        )
        for check in check_model(spec, params, X, Y, state, cell)
    ]


def format_table(rows: Sequence[Row]) -> list[str]:
    """The table's lines: parameter, shape, max |analytic|, the relative errors, verdict."""
    modes = list(rows[0].vs_jax) if rows else []
    header = ["parameter", "shape", "max |analytic|", "vs finite diff"]
    header += [JAX_MODES[m] for m in modes] + ["verdict"]
    body = [
        [
            row.check.name,
            str(row.check.shape),
            f"{row.check.max_abs:.2e}",
            f"{row.check.max_error:.1e}",
            *(f"{row.vs_jax[m].max_error:.1e}" for m in modes),
            "pass" if row.passed else "FAIL",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]


# --- the command line --------------------------------------------------------------------------


def _plant_help() -> str:
    lines = ["plants (--plant NAME), by --kind:"]
    for kind in KINDS:
        cell = next(c for c in CELLS.values() if c.kind == kind)
        lines.append(f"  {kind}:")
        lines += [f"    {p.name:7} {p.what}" for p in plants(cell).values()]
    note = (
        "A plant on W_h{g}, c or direct corrupts the gradient that flows back in time, so every "
        "step before the last gets it wrong: every row of the recurrent layers and the initial "
        "state fail, the output layer's (W_hq, b_q) pass; with --steps 1 only H_0 or C_0 fails "
        "(and, for the book's GRU, whose W_hh also carries R's gradient, the reset gate's rows). "
        "A plant on dW_h{g} fails that row alone."
    )
    return "\n".join([*lines, "", textwrap.fill(note, 78)])


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m experiments.gradcheck",
        description=__doc__.splitlines()[0],
        epilog=_plant_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", choices=KINDS, default="lstm", help="the cell (default lstm)")
    where = "gru: the reset gate before the recurrent product (the book's) or after (PyTorch's)"
    parser.add_argument("--gru-reset", choices=GRU_RESETS, default="before", help=where)
    parser.add_argument("--layers", type=POSITIVE, default=1, help="recurrent layers L")
    parser.add_argument("--vocab", type=POSITIVE, default=5, help="vocabulary size V")
    parser.add_argument("--hidden", type=POSITIVE, default=3, help="hidden units H")
    parser.add_argument("--batch-size", type=POSITIVE, default=2, help="batch B")
    parser.add_argument("--steps", type=POSITIVE, default=4, help="time steps T")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)
    parser.add_argument("--plant", metavar="NAME", help="leave one backward term out (below)")
    parser.add_argument(
        "--no-jax", action="store_true", help="numpy_ref and finite differences only"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143."""
    prog = "experiments.gradcheck"
    with signals.stopping(prog):
        return _main(argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    try:
        args = build_parser().parse_args(argv)
        sizes = (args.vocab, args.hidden, args.layers, args.batch_size, args.steps)
        needed = runtime.model_memory(args.kind, *sizes)
        flags = ("--vocab", "--hidden", "--layers", "--batch-size", "--steps")
        cause = " ".join(f"{flag} {size}" for flag, size in zip(flags, sizes, strict=True))
        runtime.check_available(needed, cause)  # before problem() allocates
        spec, params, X, Y, state = problem(
            args.kind,
            args.layers,
            args.gru_reset,
            args.vocab,
            args.hidden,
            args.batch_size,
            args.steps,
            args.seed,
        )
        offered = plants(spec.cell)
        if args.plant is not None and args.plant not in offered:
            raise ConfigError(
                f"--plant {args.plant}: the {spec.cell.name} cell has no such plant; choose one "
                f"of {', '.join(offered)} (see --help)"
            )
    except ConfigError as err:
        return fail(prog, str(err))
    plant = offered.get(args.plant)
    with_jax = not args.no_jax and has_jax()
    rows = run_check(spec, params, X, Y, state, plant, with_jax)
    print(
        f"{spec.cell.name}, L={spec.num_layers} V={spec.vocab_size} H={spec.num_hiddens} "
        f"B={args.batch_size} T={args.steps}, float64, seed {args.seed}: centred differences "
        f"(eps {EPS:g}), relative error with floor {FLOOR:g}, a row passes below {REL_TOL:g}"
    )
    if plant:
        print(f"planted: --plant {plant.name}: {plant.what}")
    if not with_jax:
        print("(no JAX columns: " + ("--no-jax)" if args.no_jax else "JAX is not installed)"))
    print("\n".join(format_table(rows)))
    failed = [row.check.name for row in rows if not row.passed]
    if not failed:
        print(f"all {len(rows)} rows pass")
        return 0
    print(f"{len(failed)} of {len(rows)} rows fail: {', '.join(failed)}")
    return 1
