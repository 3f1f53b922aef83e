"""One configuration, three implementations, one table and one plot.

    python -m experiments.compare                     # scratch RNN, 10 epochs, numpy/jax/torch
    python -m experiments.compare --section gru --gru-reset after --epochs 50
    python -m experiments.compare --impls numpy,jax   # without PyTorch
    python -m experiments.compare --seeds 5           # every implementation over seeds 0-4
    python -m experiments.compare --populations runs/gru-numpy-pop runs/gru-jax-pop  # no training

Every implementation starts from the same ``init_params(spec, seed)`` and sees the same
minibatches (the loader is seeded with the same seed), so the per-epoch perplexities agree to
float32 rounding at first and drift apart slowly (float32 summation orders differ). Each run
writes its own run directory ``DIR/<impl>``; the comparison adds ``compare.md`` (the table),
``compare.json`` and ``compare.png`` (train solid, validation dashed) to ``DIR``, by default
``runs/compare-<section>-<iter>``. With ``--seeds`` every implementation trains a population over
the same seeds and the table compares distributions (:mod:`experiments.analysis.compare_seeds`).
``--populations`` trains nothing: it rewrites its comparison's three files without ``--overwrite``
(into ``runs/compare-<section>-<iter>-populations`` unless ``--out`` says otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.run import rundir, runtime, signals
from experiments.run.cli import fail, stopped
from experiments.run.config import (
    IMPLS,
    ITERS,
    QUICK_EPOCHS,
    SECTIONS,
    ConfigError,
    RunConfig,
    section_config,
)
from experiments.run.flags import Parser, add_run_flags, overrides_from_args, seed_count
from experiments.run.loop import RunStopped
from experiments.run.plots import plot_comparison
from experiments.run.records import RunResult
from experiments.run.runner import run_experiment, start

TABLE = "compare.md"
JSON = "compare.json"
PLOT = "compare.png"


@dataclass
class Comparison:
    """The runs of one configuration, by implementation, and where the comparison was written."""

    out: Path
    results: dict[str, RunResult] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table: per-epoch train perplexity, then final figures and speed ratios."""
        impls = list(self.results)
        rows = [f"| epoch | {' | '.join(impls)} |", "|---:|" + "---:|" * len(impls)]
        histories = [self.results[i].history for i in impls]
        for epoch in range(len(histories[0])):
            cells = [f"{h[epoch].train_perplexity:.4f}" for h in histories]
            rows.append(f"| {epoch + 1} | {' | '.join(cells)} |")

        def row(name: str, values: Sequence[str]) -> None:
            rows.append(f"| **{name}** | {' | '.join(values)} |")

        summaries = [self.results[i].summary for i in impls]
        row("final train ppl", [f"{s['train_perplexity']:.4f}" for s in summaries])
        row("final val ppl", [_fmt(s["val_perplexity"], ".4f") for s in summaries])
        row("tokens/s, last epoch", [f"{s['tokens_per_sec']:.1f}" for s in summaries])
        row("tokens/s, median", [f"{s['tokens_per_sec_median']:.1f}" for s in summaries])
        if "torch" in self.results:
            torch_speed = self.results["torch"].summary["tokens_per_sec_median"]
            ratios = [f"{s['tokens_per_sec_median'] / torch_speed:.2f}" for s in summaries]
            row("speed / torch (median)", ratios)
        row("device", [s["device"] for s in summaries])
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            impl: {
                "run_dir": str(r.run_dir),
                "summary": r.summary,
                "history": [rec.to_dict() for rec in r.history],
            }
            for impl, r in self.results.items()
        }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m experiments.compare",
        description="Run one configuration with several implementations from the same seed.",
    )
    parser.add_argument(
        "--section",
        choices=tuple(SECTIONS),
        default="rnn_scratch",
        help="the book section whose settings to use (default rnn_scratch)",
    )
    parser.add_argument(
        "--impls",
        default=",".join(IMPLS),
        help=f"comma-separated implementations (default {','.join(IMPLS)})",
    )
    parser.add_argument("--iter", choices=ITERS, default="seq", help="iteration (default seq)")
    parser.add_argument(
        "--out", help="comparison directory (default runs/compare-<section>-<iter>)"
    )
    parser.add_argument(
        "--populations",
        nargs="+",
        metavar="DIR",
        help="compare finished populations, one per implementation, without "
        "training anything (e.g. runs/gru-numpy-pop runs/gru-jax-pop)",
    )
    add_run_flags(parser, None, seeds=seed_count)
    return parser


def configs_from_args(
    argv: Sequence[str] | None,
) -> tuple[Path, list[RunConfig], list[int] | None]:
    """The comparison directory, one config per implementation, and the seeds (or None)."""
    args = build_parser().parse_args(argv)
    if args.seeds is not None and args.seed is not None:
        raise ConfigError("--seed and --seeds: give one of them")
    for flag, values in (("--lr", args.lr), ("--theta", args.theta)):
        if values is not None and len(values) > 1:
            raise ConfigError(f"{flag}: compare runs one setting; give one value")
    runtime.configure(args)  # threads and the compilation cache, before any compute
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    bad = [i for i in impls if i not in IMPLS]
    if bad or not impls or len(set(impls)) != len(impls):
        raise ConfigError(
            f"--impls {args.impls!r}: give distinct names from {', '.join(IMPLS)}, "
            f"separated by commas"
        )
    if args.gru_reset is not None and SECTIONS[args.section].kind != "gru":
        raise ConfigError(f"--gru-reset applies to --section gru only, not {args.section}")
    out = Path(args.out or f"runs/compare-{args.section}-{args.iter}")
    overrides = overrides_from_args(args)
    if overrides["num_epochs"] is None:
        overrides["num_epochs"] = QUICK_EPOCHS
    args_list = list(sys.argv[1:] if argv is None else argv)
    overrides["command"] = " ".join(["python", "-m", "experiments.compare", *args_list])
    configs = [
        section_config(
            args.section, **{**overrides, "impl": impl, "iter": args.iter, "out": str(out / impl)}
        )
        for impl in impls
    ]
    return out, configs, args.seeds


def compare(
    out: Path, configs: Sequence[RunConfig], run: Any = None, overwrite: bool = False
) -> Comparison:
    """Run every config (checked first), then write the table, JSON and plot into ``out``.

    Args:
        out: the comparison directory.
        configs: one per implementation, each with its run directory under ``out``.
        run: ``run(config, checked) -> RunResult`` (default :func:`run_experiment`); the CLI
            passes one with a progress bar.
        overwrite: replace an existing comparison's files.
    """
    refuse_existing(out, overwrite)
    checked = [start(config) for config in configs]
    comparison = Comparison(out)
    for config, prepared in zip(configs, checked, strict=True):
        if run is None:
            result = run_experiment(config, checked=prepared)
        else:
            result = run(config, prepared)
        comparison.results[config.impl] = result
    rundir.write_text_atomic(out / TABLE, comparison.table() + "\n")
    rundir.write_json(out / JSON, comparison.to_dict())
    first = configs[0]
    plot_comparison(
        {impl: [rec.to_dict() for rec in r.history] for impl, r in comparison.results.items()},
        out / PLOT,
        f"d2l {SECTIONS[first.section].book} {first.section}, {first.iter}: "
        f"{', '.join(comparison.results)}",
    )
    return comparison


def refuse_training_flags(args: Any) -> None:
    """``--populations`` compares finished runs: a flag of a training run is a mistake."""
    flags = {
        "num_epochs": "epochs",
        "num_hiddens": "hidden",
        "num_layers": "layers",
        "data_path": "data",
    }
    given = [
        f"--{flags.get(k, k).replace('_', '-')}"
        for k, v in overrides_from_args(args).items()
        if v is not None and k != "overwrite"
    ]
    given += ["--seeds"] if args.seeds is not None else []
    if given:
        raise ConfigError(f"--populations compares finished runs: drop {', '.join(given)}")


def refuse_existing(out: Path, overwrite: bool) -> None:
    if out.is_dir() and (out / TABLE).exists() and not overwrite:
        raise ConfigError(
            f"comparison directory {out} already holds {TABLE}: pass --overwrite or choose --out"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; the exit codes of the section scripts (:mod:`experiments.run.cli`)."""
    from experiments.analysis import compare_seeds
    from experiments.populations.runner import run_population_with_progress
    from experiments.run.cli import run_with_progress

    prog = "experiments.compare"
    with signals.catching(prog) as stop:
        try:
            args = build_parser().parse_args(argv)
            if args.populations:
                refuse_training_flags(args)
                results = compare_seeds.load_populations(args.populations)
                base = next(iter(results.values())).config.base
                out = Path(args.out or f"runs/compare-{base.section}-{base.iter}-populations")
                # no --overwrite needed: it trains nothing, its files follow from the populations
                comparison = compare_seeds.write(compare_seeds.SeedComparison(out, results))
            else:
                out, configs, seeds = configs_from_args(argv)
                refuse_existing(out, configs[0].overwrite)
                if seeds is None:
                    comparison = compare(
                        out,
                        configs,
                        run=lambda config, prepared: run_with_progress(
                            config, prepared, f"[{config.impl}] ", stop=stop
                        ),
                        overwrite=configs[0].overwrite,
                    )
                else:
                    comparison = compare_seeds.compare_seeds(
                        out,
                        compare_seeds.populations(out, configs, seeds),
                        lambda pc, ready: run_population_with_progress(pc, ready, stop, False),
                    )
        except ConfigError as err:
            return fail(prog, str(err))
        except RunStopped as err:
            return stopped(prog, err, stop)
    print(comparison.table())
    print(f"comparison: {out / TABLE}, {out / PLOT}")
    return 0
