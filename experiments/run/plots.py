"""Figures: the book's animator as a saved picture, and the overlay of a comparison.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display, no global
state), then saved atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from experiments.run.rundir import save_figure


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


def _finite(pairs: Sequence[tuple[Any, Any]]) -> list[tuple[float, float]]:
    """The (x, y) pairs whose y is a finite number ("inf", "nan" and None left out)."""
    out = []
    for x, y in pairs:
        if y is not None and math.isfinite(float(y)):
            out.append((x, float(y)))
    return out


def _line(ax: Any, pairs: Sequence[tuple[Any, Any]], **style: Any) -> None:
    points = _finite(pairs)
    if points:
        ax.plot(*zip(*points, strict=True), **style)


class PerplexityPlot:
    """The book's animator as a picture, with the gradient's norm under it, drawn into one
    figure that every later :meth:`save` of the same run reuses (the lines' data replaced, the
    axes rescaled; no layout solver: the margins are fixed), so a save costs one rendering.

    Top: train and (when present) validation perplexity against the epoch, the validation
    points joined across epochs without validation. Bottom: the global gradient norm before
    clipping per epoch (median and largest over the minibatches, log scale), the clipping
    threshold ``theta``, and on the right axis the fraction of minibatches that were clipped.
    """

    def __init__(self, title: str, theta: float | None = None) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(5.5, 5.8))
        FigureCanvasAgg(self.fig)
        top, bottom = self.fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        self.fig.subplots_adjust(left=0.17, right=0.86, top=0.93, bottom=0.09, hspace=0.08)
        top.set_title(title, fontsize=10)
        top.set_ylabel("perplexity")
        top.grid(True, alpha=0.3)
        share = bottom.twinx()
        self.lines = {
            "train_perplexity": top.plot([], [], label="train")[0],
            "val_perplexity": top.plot([], [], label="val", linestyle="--")[0],
            "grad_norm_median": bottom.plot([], [], color="C2", label="‖g‖ median")[0],
            "grad_norm_max": bottom.plot([], [], color="C3", linewidth=0.8, label="‖g‖ max")[0],
            "clipped_fraction": share.plot([], [], color="C4", linewidth=0.6, alpha=0.6)[0],
        }
        top.legend(fontsize=8)
        if theta is not None:
            bottom.axhline(theta, color="gray", linestyle=":", label=f"θ = {theta:g}")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.5, 1, 2: in a decade
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        bottom.yaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks: time, no help
        bottom.set_ylabel("gradient norm\nbefore clipping")
        bottom.set_xlabel("epoch")
        bottom.grid(True, alpha=0.3)
        bottom.legend(fontsize=7, loc="upper right")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        share.set_ylim(-0.02, 1.02)
        share.set_yticks([0, 0.5, 1])
        share.set_ylabel("clipped fraction", color="C4", fontsize=8)
        self.axes = (top, bottom)

    def save(self, records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
        """Draw ``records`` (the lines of ``metrics.jsonl``) and write the PNG atomically."""
        for key, line in self.lines.items():
            points = _finite([(r["epoch"], r.get(key)) for r in records])
            line.set_data(*(zip(*points, strict=True) if points else ([], [])))
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
        save_figure(self.fig, path)


def plot_perplexity(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str,
    theta: float | None = None,
) -> None:
    """One :class:`PerplexityPlot` of ``records``, saved to ``path``."""
    PerplexityPlot(title, theta).save(records, path)


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


IMPL_COLOURS = {"numpy": "C0", "jax": "C1", "torch": "C2"}  # the same in every panel


def _bands(ax: Any, histories: Mapping[Any, Sequence[Sequence[Mapping[str, Any]]]]) -> None:
    """Per label: the median (line) and min-max band (fill) over runs, per epoch; train solid,
    validation dashed."""
    for i, (setting, runs) in enumerate(histories.items()):
        label = (
            f"lr {setting[0]:g}, θ {setting[1]:g}" if isinstance(setting, tuple) else str(setting)
        )
        colour = IMPL_COLOURS.get(label.split(" ")[0], f"C{i}")
        for key, style in (("train_perplexity", "-"), ("val_perplexity", "--")):
            epochs = min(len(r) for r in runs)
            values = np.full((len(runs), epochs), np.nan)
            for k, run in enumerate(runs):
                for e, record in enumerate(run[:epochs]):
                    v = record.get(key)
                    values[k, e] = np.nan if v is None else float(v)
            values[~np.isfinite(values)] = np.nan
            measured = ~np.isnan(values).all(axis=0)  # validation: every --val-every epochs
            if not measured.any():
                continue
            x, values = np.arange(1, epochs + 1)[measured], values[:, measured]
            name = f"{label} ({len(runs)} runs)" if key == "train_perplexity" else None
            ax.plot(x, np.nanmedian(values, axis=0), style, color=colour, linewidth=1.2, label=name)
            ax.fill_between(
                x,
                np.nanmin(values, axis=0),
                np.nanmax(values, axis=0),
                color=colour,
                alpha=0.2,
                linewidth=0,
            )
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))  # 2, 5, 20, 50: no crowding
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.grid(True, alpha=0.3, which="both")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)


def _two_and_five(y: float, _: Any) -> str:
    mantissa = round(y / 10 ** math.floor(math.log10(y))) if y > 0 else 0
    return f"{y:g}" if mantissa in (2, 5) else ""


def plot_spread(
    histories: Mapping[Any, Sequence[Sequence[Mapping[str, Any]]]],
    path: str | os.PathLike[str],
    title: str,
) -> None:
    """Populations: per epoch, the median and the min-max band of the runs' train perplexity
    (solid, filled) and validation perplexity (dashed), one colour per setting.

    Args:
        histories: per setting (a label, e.g. ``(lr, theta)`` or an implementation's name), the
            runs' ``metrics.jsonl`` records.
        path: the PNG to write.
        title: the figure's title.
    """
    plot_spread_grid({title: histories}, path)


def plot_spread_grid(
    panels: Mapping[str, Mapping[Any, Sequence[Sequence[Mapping[str, Any]]]]],
    path: str | os.PathLike[str],
    columns: int = 2,
) -> None:
    """One :func:`plot_spread` panel per entry of ``panels`` (title -> histories), in a grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(panels)
    cols = min(columns, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(6.0 * cols, 4.0 * rows))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (title, histories) in zip(axes, panels.items(), strict=False):
        ax.set_title(title, fontsize=10)
        _bands(ax, histories)
        ax.set_xlabel("epoch")
        ax.set_ylabel("perplexity: median, min-max\ntrain solid, validation dashed", fontsize=9)
    for ax in axes[count:]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)
