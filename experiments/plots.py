"""Figures: the book's animator as a saved picture, and the overlay of a comparison.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display, no global
state), then saved atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.rundir import save_figure


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig, ax


def plot_perplexity(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str
) -> None:
    """Train (and, when present, validation) perplexity against the epoch, as the book's animator.

    Args:
        records: the lines of ``metrics.jsonl`` (``epoch``, ``train_perplexity``,
            ``val_perplexity`` possibly None).
        path: the PNG to write.
        title: the figure's title.
    """
    fig, ax = _figure(title)
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r["train_perplexity"] for r in records], label="train")
    val = [(r["epoch"], r["val_perplexity"]) for r in records if r["val_perplexity"] is not None]
    if val:
        ax.plot(*zip(*val, strict=True), label="val", linestyle="--")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_comparison(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str], title: str
) -> None:
    """Train (solid) and validation (dashed) perplexity of several implementations on one plot."""
    fig, ax = _figure(title)
    for i, (impl, records) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [r["epoch"] for r in records]
        ax.plot(epochs, [r["train_perplexity"] for r in records], color=color,
                label=f"{impl} train")  # fmt: skip
        val = [(r["epoch"], r["val_perplexity"]) for r in records if r["val_perplexity"]]
        if val:
            ax.plot(*zip(*val, strict=True), color=color, linestyle="--", label=f"{impl} val")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
