"""What a run records: one line of ``metrics.jsonl`` per epoch, the result, and ``summary.json``.

Which figure to quote: at the book's lr 1 a run spikes now and then until its last epoch, so the
final epoch alone can land in a spike; the summary gives the final perplexity as the book prints
it and, beside it, the median over the last 10% of the epochs (``late_median``), the figure to
compare implementations on.
"""

from __future__ import annotations

import datetime
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.run.config import SECTIONS, RunConfig

PREFIXES = ("time traveller", "traveller")
LATE_FRACTION = 0.1  # the tail of the run whose median the summary reports


@dataclass
class EpochRecord:
    """One line of ``metrics.jsonl``; ``sample`` is the continuation printed every 10 epochs."""

    epoch: int  # 1-based
    train_perplexity: float
    val_perplexity: float | None  # None: validation off
    tokens_per_sec: float
    seconds: float  # training wall time of the epoch (validation not included)
    sample: str | None = None
    diverged: bool = False  # this epoch ended the run (non-finite or above --max-perplexity)
    grad_norm_median: float | None = None  # the global gradient norm before clipping, over
    grad_norm_max: float | None = None  # the epoch's minibatches: median, largest,
    clipped_fraction: float | None = None  # and the fraction that were clipped (norm > theta)

    @classmethod
    def of_epoch(
        cls, epoch: int, stats: Any, val: float | None, theta: float, **extra: Any
    ) -> EpochRecord:
        """The record of an epoch's ``EpochStats``."""
        norms = stats.grad_norms
        return cls(
            epoch,
            stats.perplexity,
            val,
            stats.tokens_per_sec,
            stats.seconds,
            **extra,
            grad_norm_median=float(np.median(norms)) if norms else None,
            grad_norm_max=float(max(norms)) if norms else None,
            clipped_fraction=stats.clipped_fraction(theta),
        )

    def to_dict(self) -> dict[str, Any]:
        record = {
            "epoch": self.epoch,
            "train_perplexity": self.train_perplexity,
            "val_perplexity": self.val_perplexity,
            "tokens_per_sec": self.tokens_per_sec,
            "seconds": self.seconds,
            "grad_norm_median": self.grad_norm_median,
            "grad_norm_max": self.grad_norm_max,
            "clipped_fraction": self.clipped_fraction,
        }
        if self.diverged:
            record["diverged"] = True
        return record

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        """A record read back from ``metrics.jsonl`` or a checkpoint's history."""

        def number(key: str) -> float | None:
            value = d.get(key)
            return None if value is None else float(value)

        return cls(
            epoch=int(d["epoch"]),
            train_perplexity=float(d["train_perplexity"]),
            val_perplexity=number("val_perplexity"),
            tokens_per_sec=float(d["tokens_per_sec"]),
            seconds=float(d["seconds"]),
            diverged=bool(d.get("diverged", False)),
            grad_norm_median=number("grad_norm_median"),
            grad_norm_max=number("grad_norm_max"),
            clipped_fraction=number("clipped_fraction"),
        )


def late_median(values: list[float], fraction: float = LATE_FRACTION) -> float:
    """The median of the last ``ceil(fraction * n)`` values (at least one)."""
    tail = values[-max(1, math.ceil(fraction * len(values))) :]
    return float(np.median(tail))


@dataclass
class RunResult:
    """What a run produced: per-epoch records, final figures, predictions, where files went."""

    config: RunConfig
    run_dir: Path
    device: str
    history: list[EpochRecord] = field(default_factory=list)
    predictions: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    params: Any = None  # the final parameters (NumPy)

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]

    def book_line(self) -> str:
        """``perplexity 1.0, 71549.5 tokens/sec on cuda:0``: the last epoch, as the book."""
        last = self.final
        return (
            f"perplexity {last.train_perplexity:.1f}, "
            f"{last.tokens_per_sec:.1f} tokens/sec on {self.device}"
        )

    def report_lines(self) -> list[str]:
        """The lines printed after training: the book's three, a note when the model still
        repeats one character, then the held-out perplexity."""
        lines = [self.book_line(), *(self.predictions[p] for p in PREFIXES)]
        generated = self.predictions[PREFIXES[0]][len(PREFIXES[0]) :]
        if len(set(generated)) == 1:
            lines.append(
                f"(the model still predicts only {generated[0]!r}, the most frequent character "
                f"after {len(self.history)} epoch(s): a first look; the book trains "
                f"{SECTIONS[self.config.section].num_epochs})"
            )
        if self.final.val_perplexity is not None:
            lines.append(
                f"validation perplexity {self.final.val_perplexity:.1f} "
                f"(held-out last {self.config.val_fraction:.0%} of the text)"
            )
        return lines


def _versions() -> dict[str, str]:
    import matplotlib

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }


def summarize(result: RunResult, described: dict[str, Any], seconds_total: float) -> dict[str, Any]:
    """``summary.json``: final figures, the book's lines, machine, versions, date, command."""
    config, last = result.config, result.final
    speeds = [r.tokens_per_sec for r in result.history]
    section = SECTIONS[config.section]
    return {
        "section": config.section,
        "book_section": section.book,
        "title": section.title,
        "impl": config.impl,
        "iter": config.iter,
        "seed": config.seed,
        "lr": config.lr,
        "theta": config.theta,
        "epochs": len(result.history),
        "train_perplexity": last.train_perplexity,
        "val_perplexity": last.val_perplexity,
        "train_perplexity_late_median": late_median([r.train_perplexity for r in result.history]),
        "tokens_per_sec": last.tokens_per_sec,
        "tokens_per_sec_median": float(np.median(speeds)),
        "seconds_total": seconds_total,
        "book_line": result.book_line(),
        "predictions": result.predictions,
        "device": result.device,
        "machine": described["machine"],
        "platform": platform.platform(),
        "versions": {**_versions(), **described["versions"]},
        "torch_model": described.get("torch_model"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command or " ".join(sys.argv),
        "resumed_at": list(config.resumed_at),
        "checkpoint": "checkpoint.npz",
    }
