"""Collect the ``summary.json`` of run directories into one Markdown table, for the README.

    python -m experiments.table runs/*

Each argument is a run directory, or a folder whose sub-folders are run directories (``--iter
both`` writes ``DIR/seq`` and ``DIR/random``; ``compare`` writes ``DIR/<impl>``). Rows are sorted
by book section, iteration and implementation; the last column is the command that made the row.
Perplexities are the last epoch's; tokens/s is the
last epoch's, as the book prints it, followed by the median over all epochs in brackets (robust to
the first epoch's compilation and to a busy machine).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from experiments.config import IMPLS, ITERS, SECTIONS
from experiments.rundir import METRICS, SUMMARY, read_metrics

COLUMNS = ("section", "impl", "iter", "epochs", "train ppl", "val ppl", "best val ppl (epoch)",
           "tokens/s (median)",
           "device", "machine", "date", "command")  # fmt: skip


def find_summaries(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """``summary.json`` files in ``paths`` or one level below; and the paths that had none."""
    found: list[Path] = []
    empty: list[Path] = []
    for path in map(Path, paths):
        if (path / SUMMARY).is_file():
            found.append(path / SUMMARY)
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
    missing = [
        k for k in ("section", "impl", "iter", "epochs", "train_perplexity") if k not in summary
    ]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is not a run summary")
    try:
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


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One row per run, in the order of :data:`COLUMNS`."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in sorted(summaries, key=_order):
        book = s.get("book_section")
        section = f"{book} {s['section']}" if book else s["section"]
        cells = [
            section,
            s["impl"] + (f" ({s['torch_model']})" if s.get("torch_model") else ""),
            s["iter"],
            str(s["epochs"]),
            _number(s["train_perplexity"], ".2f"),
            _number(s.get("val_perplexity"), ".2f"),
            f"{s['best_val'][0]:.2f} ({s['best_val'][1]})" if s.get("best_val") else "-",
            f"{_number(s.get('tokens_per_sec'), '.1f')} "
            f"({_number(s.get('tokens_per_sec_median'), '.1f')})",
            s.get("device", "-"),
            str(s.get("machine", "-")).replace("|", "/"),
            s.get("date", "-")[:10],
            f"`{s['command']}`" if s.get("command") else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = "experiments.table"
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if not args:
        print(f"{prog}: error: give run directories, e.g. runs/*", file=sys.stderr)
        return 2
    found, empty = find_summaries(args)
    if not found:
        print(f"{prog}: error: no {SUMMARY} in {' '.join(args)}: run an experiment first",
              file=sys.stderr)  # fmt: skip
        return 2
    summaries, damaged = [], []
    for path in found:
        try:
            summaries.append(load_summary(path))
        except ValueError as err:
            damaged.append(str(err))
    if summaries:
        print(markdown_table(summaries))
    for message in damaged:
        print(f"{prog}: skipped a damaged run: {message}", file=sys.stderr)
    if empty:
        print(f"{prog}: skipped {len(empty)} path(s) without {SUMMARY}: "
              f"{' '.join(map(str, empty))}", file=sys.stderr)  # fmt: skip
    return 2 if damaged else 0


if __name__ == "__main__":
    sys.exit(main())
