"""The flags of the experiment scripts, and the :class:`RunConfig` fields they set (the configs
themselves: :func:`experiments.sections.command.configs_from_args`).

Every value is checked when it is parsed (a wrong one ends the command with one line naming the
flag, :class:`Parser`), and again as a whole by :func:`experiments.run.config.validate`. Flags left
out are None, so that the section's defaults apply, and so that ``--resume`` can tell a flag given
on the command line (which must agree with the run's saved setting) from one left out.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from experiments.run import runtime
from experiments.run.config import (
    IMPLS,
    ITERS,
    QUICK_EPOCHS,
    SECTIONS,
    TORCH_MODELS,
    ConfigError,
)
from numpy_ref.checks import is_int, is_positive


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions (one line, printed by :func:`main`), and
    which takes no abbreviation of a flag (``--epoch 3`` is refused, not read as ``--epochs``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parsed(convert: Any, ok: Any, what: str) -> Any:
    """An argparse ``type``: ``convert(text)``, refused unless ``ok(value)``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


POSITIVE = _parsed(int, is_int, "an integer >= 1")
NON_NEGATIVE = _parsed(int, lambda v: is_int(v, 0), "an integer >= 0")
POSITIVE_NUMBER = _parsed(float, is_positive, "a finite number > 0")
FRACTION = _parsed(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
MAX_TOKENS = _parsed(int, lambda v: v >= 1 or v == -1, "an integer >= 1 or -1 (all)")


def _threads(text: str) -> int:
    """``--threads``: 0 (the policy) up to :func:`runtime.max_threads`; more threads than that
    only wait for each other (10,000 made the libraries spin at 100% CPU, growing to 5 GB)."""
    value = NON_NEGATIVE(text)
    if value > runtime.max_threads():
        raise argparse.ArgumentTypeError(
            f"must be at most {runtime.max_threads()} here ({runtime.THREADS_PER_CORE} per core, "
            f"or {runtime.MIN_THREADS_LIMIT}), got {text!r}; 0 (the default) uses half the cores"
        )
    return value


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--no-compile-cache``, applied by :func:`runtime.configure` (whose
    docstring says what they do)."""
    parser.add_argument(
        "--threads",
        type=_threads,
        default=runtime.AUTO,
        metavar="N",
        help="threads of BLAS, OpenMP, PyTorch and XLA (default 0: half the "
        "cores, at least 1; docs/performance.md)",
    )
    parser.add_argument(
        "--no-compile-cache",
        dest="compile_cache",
        action="store_false",
        help=f"do not use JAX's persistent compilation cache "
        f"(default: on, in {runtime.compile_cache_dir()})",
    )


MAX_SEEDS = 100_000  # members of one population: far beyond any machine's memory already


def _seeds(text: str) -> list[int]:
    """``0-4`` (a range, both ends included), ``0,3,7`` or ``5``: distinct integers >= 0, at most
    :data:`MAX_SEEDS` of them (counted before the list is built)."""
    try:
        parts = []
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            parts.append((int(low), int(high) if sep else int(low)))
    except ValueError:
        parts = []
    _check_count(sum(max(0, high - low + 1) for low, high in parts), text)
    values = [seed for low, high in parts for seed in range(low, high + 1)]
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"must be seeds as 0-4, 0,3,7 or 5 (distinct integers >= 0), got {text!r}"
        )
    return values


def _numbers(text: str) -> list[float]:
    """``1`` or ``0.5,1,2``: finite numbers > 0, each once."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(is_positive(v) for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0, or several separated by commas, got {text!r}"
        )
    return values


def seed_count(text: str) -> list[int]:
    """``compare --seeds``: a count N (seeds 0 to N-1, at least 2), or seeds as ``--seeds``."""
    if text.strip().isdigit():
        count = int(text)
        if count < 2:
            raise argparse.ArgumentTypeError(f"must be a count >= 2 of seeds, got {text!r}")
        _check_count(count, text)
        return list(range(count))
    return _seeds(text)


def _check_count(count: int, text: str) -> None:
    """Refuse more than :data:`MAX_SEEDS` seeds before their list is built (a billion of them
    took 17 GB and 40 s to parse)."""
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} makes {count:,} members of a population; at most {MAX_SEEDS:,} (fewer "
            f"seeds: every member needs its own memory and run directory)"
        )


def add_run_flags(parser: argparse.ArgumentParser, section: str | None, seeds: Any = None) -> None:
    """The flags of one configuration (shared by the section scripts and ``compare``, which
    reads ``--seeds`` with its own ``seeds`` type)."""
    s = SECTIONS[section] if section else None
    book = f"the book's: {s.num_hiddens}" if s else "the section's"
    epochs = "500, --quick 10" if section else "10: a first comparison"
    parser.add_argument("--epochs", type=POSITIVE, help=f"epochs (default {epochs})")
    parser.add_argument(
        "--lr",
        type=_numbers,
        help="learning rate (default the book's); several (0.5,1,2) make a population",
    )
    parser.add_argument("--hidden", type=POSITIVE, help=f"hidden units H (default {book})")
    parser.add_argument("--layers", type=POSITIVE, help="recurrent layers L")
    parser.add_argument(
        "--seed",
        type=NON_NEGATIVE,
        help="seed of the initial weights and of every minibatch (default 0)",
    )
    parser.add_argument(
        "--seeds",
        type=seeds or _seeds,
        metavar="0-4|0,3,7",
        help="a population: one run per seed (with every --lr and --theta); "
        "--impl jax trains them as one program",
    )
    _add_control_flags(parser)  # processes, device, run directory, checkpoints, validation
    parser.add_argument(
        "--theta", type=_numbers, help="gradient clipping (default 1); several make a population"
    )
    parser.add_argument("--batch-size", type=POSITIVE, help="minibatch size B (default 32)")
    parser.add_argument("--num-steps", type=POSITIVE, help="steps per subsequence T (default 35)")
    parser.add_argument(
        "--max-tokens",
        type=MAX_TOKENS,
        help="training tokens from the start of the text (default 10000, -1 all)",
    )
    parser.add_argument(
        "--val-fraction",
        type=FRACTION,
        help="held-out end of the text (default 0.1; 0 turns validation off)",
    )
    parser.add_argument(
        "--torch-model",
        choices=TORCH_MODELS,
        help="for --impl torch: the book's scratch model in PyTorch, or "
        "nn.RNN/GRU/LSTM (default: concise, scratch for 8.5 and the book's GRU)",
    )
    parser.add_argument(
        "--data", help="the corpus file (default: $RNN_LM_DATA_DIR, cache, download)"
    )
    add_runtime_flags(parser)  # --threads, --no-compile-cache
    if section is None or SECTIONS[section].kind == "gru":
        parser.add_argument(
            "--gru-reset",
            choices=("before", "after"),
            help="GRU reset gate before (the book) or after (PyTorch) the "
            "recurrent product (default before)",
        )


def _add_control_flags(parser: argparse.ArgumentParser) -> None:
    """How a run runs: across processes, on which device, into which directory, how often it
    saves and validates, when it counts as diverged."""
    parser.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="--impl jax across processes: the coordinator's address (or "
        "$RNN_LM_COORDINATOR; 'auto' on SLURM), docs/scaling.md",
    )
    parser.add_argument("--num-processes", type=POSITIVE, help="with --coordinator")
    parser.add_argument("--process-id", type=NON_NEGATIVE, help="with --coordinator")
    parser.add_argument("--device", help="cpu, gpu, cuda or cuda:N (default: first GPU, else CPU)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a first look: {QUICK_EPOCHS} epochs unless --epochs says otherwise",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in an existing run directory (kept until the new run's first "
        "checkpoint)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=POSITIVE,
        metavar="N",
        help="epochs between checkpoints (default 10; also after epoch 1 and the last)",
    )
    parser.add_argument(
        "--val-every",
        type=POSITIVE,
        metavar="N",
        help="epochs between two validations on the held-out text (default 10; "
        "also after the last)",
    )
    parser.add_argument(
        "--max-perplexity",
        type=POSITIVE_NUMBER,
        metavar="P",
        help="stop as diverged when the training perplexity exceeds P (default "
        "4 x the vocabulary size)",
    )


def build_parser(section: str) -> argparse.ArgumentParser:
    s = SECTIONS[section]
    iters = "both" if len(s.iters) > 1 else s.iters[0]
    parser = Parser(
        prog=f"python -m experiments.{section}",
        description=f"d2l {s.book} {s.title}: {s.kind}, {s.num_layers} layer(s), "
        f"{s.num_hiddens} hidden, lr {s.lr:g}, {s.num_epochs} epochs.",
    )
    parser.add_argument("--impl", choices=IMPLS, help="implementation (default numpy)")
    parser.add_argument(
        "--iter",
        choices=(*ITERS, "both"),
        help=f"seq: sequential, state carried; random: random sampling, state reset; book-random: "
        f"the book's 'random' run (sequential batches, state reset); both: seq then random "
        f"(default {iters})",
    )
    parser.add_argument(
        "--out",
        help="run directory (default runs/<section>[-<iter>]-<impl>; "
        "with --iter both, DIR/seq and DIR/random)",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint to --epochs in "
        "all (its other settings are kept)",
    )
    add_run_flags(parser, section)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields a parsed command line sets (None: keep the section's default)."""
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else None)
    return {
        "impl": getattr(args, "impl", None),
        "num_epochs": epochs,
        "lr": _single(args.lr),
        "num_hiddens": args.hidden,
        "num_layers": args.layers,
        "seed": args.seed,
        "device": args.device,
        "overwrite": args.overwrite,
        "theta": _single(args.theta),
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "max_tokens": args.max_tokens,
        "val_fraction": args.val_fraction,
        "torch_model": args.torch_model,
        "data_path": None if args.data is None else os.path.abspath(args.data),
        "gru_reset": getattr(args, "gru_reset", None),
        "checkpoint_every": args.checkpoint_every,
        "val_every": args.val_every,
        "max_perplexity": args.max_perplexity,
    }


def _single(values: list[float] | None) -> float | None:
    return values[0] if values is not None and len(values) == 1 else None


def is_population(args: argparse.Namespace) -> bool:
    """Seeds, or several learning rates or thresholds, make a population."""
    lists = [v for v in (args.lr, args.theta) if v is not None]
    return args.seeds is not None or any(len(v) > 1 for v in lists)
