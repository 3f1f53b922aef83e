"""Collect the ``summary.json`` of run directories into one Markdown table, for the README.

    python -m experiments.table runs/*
    python -m experiments.table runs/* --plot runs/spread.png   # and the populations' bands

Each argument is a run directory, a population's directory, or a folder whose sub-folders are
(``--iter both`` writes ``DIR/seq`` and ``DIR/random``; ``compare`` writes ``DIR/<impl>``). Rows
are sorted by book section, iteration, implementation and setting; the last column is the command
that made the row. A single run's perplexities are its last epoch's (train ppl, as the book prints
it) and the median over its last 10% of epochs (late ppl, robust to the spikes of lr 1); a
population's are ``mean ± sd (n)`` over its runs, one row per (lr, theta). tokens/s is a single
run's last epoch's, followed by the median over all epochs in brackets (robust to the first
epoch's compilation and to a busy machine); a population's is its throughput in all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from experiments.run import signals
from experiments.run.cli import fail
from experiments.run.config import IMPLS, ITERS, SECTIONS, ConfigError
from experiments.run.flags import Parser
from experiments.run.rundir import CHECKPOINT, METRICS, POPULATION, SUMMARY, read_metrics

COLUMNS = ("section", "impl", "iter", "lr, θ", "runs", "epochs", "train ppl", "late ppl",
           "val ppl", "best val ppl (epoch)", "tokens/s (median)", "device", "machine", "date",
           "command")  # fmt: skip


def find_summaries(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """``summary.json`` files in ``paths`` or one level below; and the paths that had none."""
    found: list[Path] = []
    empty: list[Path] = []
    for path in map(Path, paths):
        if (path / SUMMARY).is_file():
            found.append(path / SUMMARY)
            continue
        if (path / POPULATION).exists():  # unfinished: its finished members are not runs alone
            empty.append(path)
            continue
        below = sorted(path.glob(f"*/{SUMMARY}")) if path.is_dir() else []
        if below:
            found.extend(below)
        else:
            empty.append(path)
    return found, empty


def load_summary(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} cannot be read as JSON ({err}); rerun that experiment") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path} is not a run summary (not a JSON object)")
    needed = ("section", "impl", "iter", "epochs")
    needed += ("settings",) if summary.get("kind") == "population" else ("train_perplexity",)
    missing = [k for k in needed if k not in summary]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is not a run summary")
    try:
        if summary.get("kind") != "population":
            summary["best_val"] = best_validation(path.parent / METRICS)
    except (OSError, ValueError) as err:
        raise ValueError(f"{err}; rerun that experiment or delete the folder") from None
    return summary


def best_validation(metrics: Path) -> tuple[float, int] | None:
    """The lowest finite validation perplexity in a ``metrics.jsonl`` and its epoch, if any.

    Raises:
        ValueError: the file is damaged (named, with the line).
    """
    if not metrics.is_file():
        return None
    best = None
    for record in read_metrics(metrics):
        val = record.get("val_perplexity")
        val = None if val is None else float(val)  # "inf", "nan": strings (strict JSON)
        if val is not None and math.isfinite(val) and (best is None or val < best[0]):
            best = (val, record["epoch"])
    return best


def _order(summary: dict[str, Any]) -> tuple[Any, ...]:
    sections = list(SECTIONS)
    section = summary["section"]
    return (
        sections.index(section) if section in sections else len(sections),
        ITERS.index(summary["iter"]) if summary["iter"] in ITERS else len(ITERS),
        IMPLS.index(summary["impl"]) if summary["impl"] in IMPLS else len(IMPLS),
        summary.get("date", ""),
    )


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(float(value), spec)


def _spread(d: dict[str, Any]) -> str:
    return "-" if not d.get("n") else f"{d['mean']:.2f} ± {d['sd']:.2f} ({d['n']})"


def rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The table cells of a run (one row) or of a population (one row per setting)."""
    s = summary
    book = s.get("book_section")
    common = {
        "section": f"{book} {s['section']}" if book else s["section"],
        "impl": s["impl"] + (f" ({s['torch_model']})" if s.get("torch_model") else ""),
        "iter": s["iter"],
        "epochs": str(s["epochs"]),
        "device": s.get("device") or "-",
        "machine": str(s.get("machine") or "-").replace("|", "/"),
        "date": (s.get("date") or "-")[:10],
        "command": f"`{s['command']}`" if s.get("command") else "-",
    }
    if s.get("kind") != "population":
        lr, theta = s.get("lr"), s.get("theta")
        return [{
            **common,
            "lr, θ": "-" if lr is None else f"{lr:g}, {theta:g}",
            "runs": "1",
            "train ppl": _number(s["train_perplexity"], ".2f"),
            "late ppl": _number(s.get("train_perplexity_late_median"), ".2f"),
            "val ppl": _number(s.get("val_perplexity"), ".2f"),
            "best val ppl (epoch)": (f"{s['best_val'][0]:.2f} ({s['best_val'][1]})"
                                     if s.get("best_val") else "-"),
            "tokens/s (median)": f"{_number(s.get('tokens_per_sec'), '.1f')} "
                                 f"({_number(s.get('tokens_per_sec_median'), '.1f')})",
        }]  # fmt: skip
    return [{
        **common,
        "lr, θ": f"{setting['lr']:g}, {setting['theta']:g}",
        "runs": str(setting["train_perplexity"]["n"]),
        "train ppl": _spread(setting["train_perplexity"]),
        "late ppl": _spread(setting["train_perplexity_late_median"]),
        "val ppl": _spread(setting["val_perplexity"]),
        "best val ppl (epoch)": "-",
        "tokens/s (median)": _number(s.get("tokens_per_sec"), ".1f"),
    } for setting in s["settings"]]  # fmt: skip


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One row per run or population setting, in the order of :data:`COLUMNS`."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in sorted(summaries, key=_order):
        for row in rows(s):
            lines.append("| " + " | ".join(row[c] for c in COLUMNS) + " |")
    return "\n".join(lines)


def plot_populations(summaries: Sequence[tuple[Path, dict[str, Any]]], path: Path) -> None:
    """One panel per (section, iteration): each population's first setting as a band per
    implementation (its members' train and validation perplexity per epoch)."""
    from experiments.run.plots import plot_spread_grid

    panels: dict[str, dict[str, list]] = {}
    for folder, s in sorted(summaries, key=lambda item: _order(item[1])):
        if s.get("kind") != "population" or not s["settings"]:
            continue
        setting = s["settings"][0]
        names = [m for m in s["members"] if f"lr{setting['lr']:g}-theta{setting['theta']:g}" in m]
        runs = [
            read_metrics(folder / m / METRICS)
            for m in names
            if (folder / m / METRICS).is_file() and m not in s.get("diverged", [])
        ]
        book = s.get("book_section", "")
        title = f"{book} {s['section']} ({s['iter']}), lr {setting['lr']:g}"
        label = s["impl"] + (f" ({s['torch_model']})" if s.get("torch_model") else "")
        if runs:
            panels.setdefault(title, {})[label] = runs
    if panels:
        plot_spread_grid(panels, path)


def build_parser() -> Parser:
    parser = Parser(prog="python -m experiments.table", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or population directories")
    parser.add_argument("--plot", metavar="FILE.png", help="also the populations' bands")
    return parser


def check_plot(path: str) -> Path:
    """``--plot`` as a file that can be written in an existing folder, or ConfigError."""
    plot = Path(path)
    if plot.is_dir():
        raise ConfigError(f"--plot {path} is a folder: give a file name (.png)")
    if not plot.parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {plot.parent} does not exist")
    if not os.access(plot.parent, os.W_OK):
        raise ConfigError(f"--plot {path}: cannot write in {plot.parent}: choose another path")
    return plot


def main(argv: Sequence[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143."""
    prog = "experiments.table"
    with signals.stopping(prog):
        return _main(argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    try:
        parsed = build_parser().parse_intermixed_args(argv)
        plot = check_plot(parsed.plot) if parsed.plot is not None else None
    except ConfigError as err:
        return fail(prog, str(err))
    args = parsed.dirs
    found, empty = find_summaries(args)
    unfinished = [p for p in empty if (p / POPULATION).exists() or (p / CHECKPOINT).exists()]
    if not found:
        fix = (f"unfinished: finish with --resume {unfinished[0]}" if unfinished
               else "run an experiment first")  # fmt: skip
        print(f"{prog}: error: no {SUMMARY} in {' '.join(args)}: {fix}", file=sys.stderr)
        return 2
    summaries, damaged = [], []
    for path in found:
        try:
            summaries.append((path.parent, load_summary(path)))
        except ValueError as err:
            damaged.append(str(err))
    if summaries:
        print(markdown_table([s for _, s in summaries]))
    if plot is not None:
        try:
            plot_populations(summaries, plot)
        except OSError as err:
            print(f"{prog}: error: --plot {plot}: {err.strerror or err}", file=sys.stderr)
            return 2
    for message in damaged:
        print(f"{prog}: skipped a damaged run: {message}", file=sys.stderr)
    if unfinished:
        print(f"{prog}: skipped {len(unfinished)} unfinished run(s) or population(s), without "
              f"{SUMMARY} (finish them with --resume): {' '.join(map(str, unfinished))}",
              file=sys.stderr)  # fmt: skip
    empty = [p for p in empty if p not in unfinished]
    if empty:
        print(f"{prog}: skipped {len(empty)} path(s) without {SUMMARY}: "
              f"{' '.join(map(str, empty))}", file=sys.stderr)  # fmt: skip
    return 2 if damaged else 0
