"""The command line shared by every section script: flags, checks, printing, exit codes.

``python -m experiments.<section> [flags]`` parses its flags into one :class:`RunConfig` per
iteration scheme, checks all of them (settings, implementation, corpus, run directories) before the
first run starts, then runs them one after the other through :func:`run_experiment`, printing what
the book prints (a continuation of "time traveller" every 10 epochs, then the perplexity and speed
line and two continuations) with a progress bar over epochs on stderr (quiet when stderr is not a
terminal).

Bad input (an unknown ``--impl``, a missing optional package, a non-positive size, rate or epoch
count, an unwritable ``--out``, an existing run directory without ``--overwrite``) ends the
command with exactly one line on stderr and exit code 2, before any training.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from experiments.config import (
    IMPLS,
    ITERS,
    QUICK_EPOCHS,
    SECTIONS,
    TORCH_MODELS,
    ConfigError,
    RunConfig,
    default_run_dir,
    section_config,
)
from numpy_ref.checks import is_int, is_positive

EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions (one line, printed by :func:`main`)."""

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


def add_run_flags(parser: argparse.ArgumentParser, section: str | None) -> None:
    """The flags of one configuration (shared by the section scripts and ``compare``)."""
    s = SECTIONS[section] if section else None
    book = f"the book's: {s.num_hiddens}" if s else "the section's"
    parser.add_argument("--epochs", type=POSITIVE, help="epochs (default 500, --quick 10)")
    parser.add_argument("--lr", type=POSITIVE_NUMBER, help="learning rate (default the book's)")
    parser.add_argument("--hidden", type=POSITIVE, help=f"hidden units H (default {book})")
    parser.add_argument("--layers", type=POSITIVE, help="recurrent layers L")
    parser.add_argument(
        "--seed",
        type=NON_NEGATIVE,
        default=0,
        help="seed of the initial weights and of every minibatch (default 0)",
    )
    parser.add_argument("--device", help="cpu, gpu, cuda or cuda:N (default: first GPU, else CPU)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a first look: {QUICK_EPOCHS} epochs unless --epochs says otherwise",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run files of an existing run directory",
    )
    parser.add_argument("--theta", type=POSITIVE_NUMBER, help="gradient clipping (default 1)")
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
    if section is None or SECTIONS[section].kind == "gru":
        parser.add_argument("--gru-reset", choices=("before", "after"),
                            help="GRU reset gate before (the book) or after (PyTorch) the "
                                 "recurrent product (default before)")  # fmt: skip


def build_parser(section: str) -> argparse.ArgumentParser:
    s = SECTIONS[section]
    iters = "both" if len(s.iters) > 1 else s.iters[0]
    parser = Parser(
        prog=f"python -m experiments.{section}",
        description=f"d2l {s.book} {s.title}: {s.kind}, {s.num_layers} layer(s), "
        f"{s.num_hiddens} hidden, lr {s.lr:g}, {s.num_epochs} epochs.",
    )
    parser.add_argument("--impl", choices=IMPLS, default="numpy",
                        help="implementation (default numpy)")  # fmt: skip
    parser.add_argument(
        "--iter", choices=(*ITERS, "both"), default=iters,
        help=f"seq: sequential, state carried; random: random sampling, state reset; book-random: "
        f"the book's 'random' run (sequential batches, state reset); both: seq then random "
        f"(default {iters})",
    )  # fmt: skip
    parser.add_argument("--out", help="run directory (default runs/<section>[-<iter>]-<impl>; "
                        "with --iter both, DIR/seq and DIR/random)")  # fmt: skip
    add_run_flags(parser, section)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields a parsed command line sets (None: keep the section's default)."""
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else None)
    return {
        "impl": getattr(args, "impl", None),
        "num_epochs": epochs,
        "lr": args.lr,
        "num_hiddens": args.hidden,
        "num_layers": args.layers,
        "seed": args.seed,
        "device": args.device,
        "overwrite": args.overwrite,
        "theta": args.theta,
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "max_tokens": args.max_tokens,
        "val_fraction": args.val_fraction,
        "torch_model": args.torch_model,
        "data_path": args.data,
        "gru_reset": getattr(args, "gru_reset", None),
    }


def configs_from_args(
    section: str, argv: Sequence[str] | None, command: str | None = None
) -> list[RunConfig]:
    """Parse ``argv`` into the runs of one command (two for ``--iter both``)."""
    args = build_parser(section).parse_args(argv)
    iters = ("seq", "random") if args.iter == "both" else (args.iter,)
    base = overrides_from_args(args)
    base["command"] = command if command is not None else _command(section, argv)
    configs = []
    for iter_ in iters:
        out = args.out
        if len(iters) > 1 and out is None:  # name each run's iteration
            out = default_run_dir(section, iter_, args.impl, named=True)
        elif len(iters) > 1:
            out = str(Path(out) / iter_)
        configs.append(section_config(section, iter=iter_, out=out, **base))
    return configs


def _command(section: str, argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", f"experiments.{section}", *args])


def fail(prog: str, message: str) -> int:
    """Print one line on stderr; the exit code for bad input."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def main(section: str, argv: Sequence[str] | None = None) -> int:
    """Run a section script; returns the exit code (0, 2 for bad input, 130 if interrupted)."""
    from experiments.runner import start

    prog = f"experiments.{section}"
    try:
        configs = configs_from_args(section, argv)
        checked = [start(config) for config in configs]
    except ConfigError as err:
        return fail(prog, str(err))
    try:
        for config, prepared in zip(configs, checked, strict=True):
            if len(configs) > 1:
                print(f"# {section}, iteration {config.iter}, {config.impl} -> {config.out}")
            result = run_with_progress(config, prepared)
            for line in result.report_lines():
                print(line)
            print(f"run directory: {result.run_dir}")
    except ConfigError as err:
        return fail(prog, str(err))
    except FloatingPointError as err:  # a diverged run: say so in one line, keep the files
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the run directory keeps the epochs done", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def run_with_progress(config: RunConfig, prepared: Any, label: str = "") -> Any:
    """:func:`run_experiment` with a tqdm bar on stderr and the book's samples on stdout.

    ``label`` prefixes each printed sample (``compare`` names the implementation).
    """
    from tqdm import tqdm

    from experiments.runner import EpochRecord, run_experiment

    desc = f"{config.section} {config.impl} {config.iter}"
    with tqdm(total=config.num_epochs, desc=desc, unit="epoch", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:  # fmt: skip

        def on_epoch(record: EpochRecord) -> None:
            if record.sample is not None:
                bar.write(f"{label}{record.sample}", file=sys.stdout)
            postfix = {"ppl": f"{record.train_perplexity:.2f}"}
            if record.val_perplexity is not None:
                postfix["val"] = f"{record.val_perplexity:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

        return run_experiment(config, on_epoch, checked=prepared)
