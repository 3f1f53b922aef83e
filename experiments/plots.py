"""Figures: the book's animator as a saved picture, and the overlay of a comparison.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display, no global
state), then saved atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.ticker import MaxNLocator

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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    """Several implementations' runs of one configuration, on two panels.

    Top: train (solid) and validation (dashed) perplexity, wide lines under narrow ones so that
    curves that coincide stay visible. Bottom: each implementation's relative difference in
    train perplexity to the first one, on a log scale (how far float32 rounding has drifted).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 6.0))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    top.set_title(title, fontsize=10)
    top.set_ylabel("perplexity")
    names = list(histories)
    reference = [r["train_perplexity"] for r in histories[names[0]]]
    for i, impl in enumerate(names):
        records = histories[impl]
        style = {"color": f"C{i}", "linewidth": 1.0 + 2.0 * (len(names) - 1 - i)}
        epochs = [r["epoch"] for r in records]
        train = [r["train_perplexity"] for r in records]
        top.plot(epochs, train, label=f"{impl} train", **style)
        val = [(r["epoch"], r["val_perplexity"]) for r in records if r["val_perplexity"]]
        if val:
            top.plot(*zip(*val, strict=True), linestyle="--", label=f"{impl} val", **style)
        if i > 0:
            diff = [max(abs(a - b) / b, 1e-12) for a, b in zip(train, reference, strict=False)]
            bottom.semilogy(epochs[: len(diff)], diff, label=f"{impl} vs {names[0]}", **style)
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("relative difference\n(train perplexity)")
    bottom.grid(True, alpha=0.3)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(names) > 1:
        bottom.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
