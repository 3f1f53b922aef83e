"""The host loop of every run: a single run is a population of one.

A *group* is what trains in lockstep on one backend (:mod:`experiments.run.backends`): the
members of a JAX population, all in one compiled program per chunk of an epoch
(:mod:`rnn_jax.epoch`), or the one member of a single run (any implementation). This loop drives
a group and keeps every member's files; it does on the host only what the user needs::

    for each epoch:
        stats = group.train_epoch(...)          one call per chunk; losses read back once
        validation                              every --val-every epochs and after the last
        a continuation of "time traveller"      every 10 epochs (every member in one call)
        records                                 one line appended to each metrics.jsonl
        checkpoint                              after epoch 1, every --checkpoint-every epochs
                                                and after the last: the parameters copied to
                                                the host only here; a single run's plot, at
                                                most every 30 s (PLOT_INTERVAL)
    at the end: the book's continuations (every prefix, every member: one call), plots,
    summaries.

Durability: the checkpoint is the truth. ``metrics.jsonl`` is rewritten from the checkpoint's
history when a run resumes (dropping the epochs after it, and a line torn by ``kill -9``), then
appended. A request to stop (``stop()``, polled between two chunks) ends the epoch under way
unfinished and saves the last complete one, which the group still holds on the device
(:class:`RunInterrupted`). A member whose training perplexity is not finite or exceeds the
limit diverged: a single run ends (:class:`RunDiverged`, the last good checkpoint kept), a
population's member is frozen while the others go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.run import rundir
from experiments.run.backends import Stop
from experiments.run.config import RunConfig
from experiments.run.plots import PerplexityPlot
from experiments.run.records import PREFIXES, EpochRecord, RunResult, summarize
from numpy_ref.checkpoint import save_checkpoint
from numpy_ref.spec import ModelSpec

PLOT_INTERVAL = 30.0  # seconds of training at least between two plots of a run's checkpoints


class RunStopped(Exception):
    """A run ended early; the message is the one line the command prints."""


class RunInterrupted(RunStopped):
    """Asked to stop (SIGINT, SIGTERM): the last completed epoch is saved."""


class RunDiverged(RunStopped):
    """The training perplexity became non-finite or exceeded the run's limit."""


class RunWriteError(RunStopped):
    """A file of the run could not be written (disk full, file too large)."""


@dataclass
class Member:
    """One member's host side: its settings, folder, loader, history and plot."""

    config: RunConfig
    folder: Path | None  # in the run directory's current folder ("." for a single run); None: a
    # member that only pads the member axis over devices (no files, never trains)
    loader: Any
    history: list[EpochRecord] = field(default_factory=list)
    alive: bool = True
    plot: PerplexityPlot | None = None

    def path(self, run: rundir.RunDir, name: str) -> Path:
        return run.folder / self.folder / name


@dataclass
class Loop:
    """What the loop needs besides the group: the run directory, the model, the vocabulary, the
    held-out text, and how to save the group's own checkpoint (a population's), if any."""

    run: rundir.RunDir
    spec: ModelSpec
    vocab: Any
    val_loaders: Callable[[], list[Any]] | None
    title: Callable[[RunConfig], str]
    save_group: Callable[[int, list[Any], list[Member]], None] | None = None
    single: bool = True  # a single run: plots at checkpoints, divergence ends the run
    saved: int = 0  # the epoch of the newest checkpoint on disk (0: none)


def _append_metrics(loop: Loop, members: Sequence[Member], records: Sequence[EpochRecord]) -> None:
    for member, record in zip(members, records, strict=True):
        line = rundir.json_line(record.to_dict())
        with open(member.path(loop.run, rundir.METRICS), "a", encoding="utf-8") as f:
            f.write(line)


def start_files(loop: Loop, members: Sequence[Member]) -> None:
    """Each member's folder, ``config.json`` and ``metrics.jsonl`` (its history so far)."""
    for m in members:
        if m.folder is None:
            continue
        m.path(loop.run, "").mkdir(parents=True, exist_ok=True)
        rundir.write_json(
            m.path(loop.run, rundir.CONFIG),
            {"format": rundir.RUN_FORMAT, **m.config.to_dict(), "spec": loop.spec.to_dict()},
        )
        rundir.write_jsonl(m.path(loop.run, rundir.METRICS), (r.to_dict() for r in m.history))


def save(
    loop: Loop,
    epoch: int,
    params: list[Any],
    members: Sequence[Member],
    rng_states: list[Any],
    last: bool = False,
) -> None:
    """The checkpoints of ``epoch``: the group's (a population's, what its resume reads), then
    each training member's: a single run's every time, a population's members' after the last
    epoch only (64 members' files at every checkpoint would cost more than their steps)."""
    if loop.save_group is not None:
        loop.save_group(epoch, params, list(members))
    for m, p, rng in zip(members, params, rng_states, strict=True):
        if m.alive and (loop.save_group is None or last):
            save_checkpoint(
                m.path(loop.run, rundir.CHECKPOINT),
                loop.spec,
                p,
                loop.vocab,
                config=m.config.to_dict(),
                epoch=epoch,
                history=[h.to_dict() for h in m.history],
                rng_state=rng,
            )
    loop.run.promote()
    loop.saved = epoch


def plot(loop: Loop, m: Member) -> None:
    if m.plot is None:
        m.plot = PerplexityPlot(loop.title(m.config), m.config.theta)
    m.plot.save([r.to_dict() for r in m.history], m.path(loop.run, rundir.PLOT))


def _rng_states(members: Sequence[Member]) -> list[Any]:
    return [m.loader.rng.bit_generator.state for m in members]


def train(
    loop: Loop,
    group: Any,
    members: list[Member],
    first: int,
    on_epoch: Callable[[int, list[EpochRecord]], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> float:
    """Train ``group``'s members from epoch ``first`` to the base config's last (module
    docstring); returns the training seconds. ``members`` hold the histories up to ``first - 1``.

    Raises:
        RunInterrupted, RunDiverged (a single run), RunWriteError.
    """
    base = members[0].config
    limit = base.divergence_limit(loop.spec.vocab_size)
    saved = first - 1 if first > 1 else -1  # the epoch on disk; -1: nothing yet
    done, rngs = first - 1, _rng_states(members)
    started = plotted = time.perf_counter()
    for epoch in range(first, base.num_epochs + 1):
        loaders = [m.loader if m.alive else None for m in members]
        try:
            stats = group.train_epoch(loaders, base.use_random_iter, stop)
        except Stop:
            raise _interrupted(loop, group, members, done, saved, rngs, epoch) from None
        last = epoch == base.num_epochs
        vals = [None] * len(members)
        if loop.val_loaders is not None and (epoch % base.val_every == 0 or last):
            vals = group.evaluate(loop.val_loaders())
        samples = [None] * len(members)
        if epoch % base.predict_every == 0:
            samples = [p[0] for p in group.predict(PREFIXES[:1], base.num_preds, loop.vocab)]
        records = []
        for m, s, v, sample in zip(members, stats, vals, samples, strict=True):
            if not m.alive:
                continue
            ppl = s.perplexity
            diverged = not math.isfinite(ppl) or ppl > limit
            record = EpochRecord.of_epoch(
                epoch, s, v, m.config.theta, sample=sample, diverged=diverged
            )
            m.history.append(record)
            records.append(record)
        _append_metrics(loop, [m for m in members if m.alive], records)
        for m, r in zip([m for m in members if m.alive], records, strict=True):
            m.alive = not r.diverged
        if loop.single and not members[0].alive:
            raise _diverged(loop, base, saved, epoch, stats[0].perplexity, limit)
        done, rngs = epoch, _rng_states(members)
        if epoch == 1 or epoch % base.checkpoint_every == 0 or last:
            save(loop, epoch, group.to_numpy(group.snapshot()), members, rngs, last)
            saved = epoch
            if loop.single and time.perf_counter() - plotted >= PLOT_INTERVAL:
                plot(loop, members[0])
                plotted = time.perf_counter()
        if on_epoch is not None:
            on_epoch(epoch, records)
        if not any(m.alive for m in members):
            break
    return time.perf_counter() - started


def finish(
    loop: Loop,
    group: Any,
    members: Sequence[Member],
    described: dict[str, Any],
    seconds: float,
    device: str,
    extra: dict[str, Any] | None = None,
) -> list[RunResult]:
    """The book's continuations (one call for every prefix and member), each finished member's
    plot and ``summary.json``; the results of the members that did not diverge."""
    predictions = group.predict(PREFIXES, members[0].config.num_preds, loop.vocab)
    params = group.to_numpy(group.snapshot()) if loop.single else [None] * len(members)
    results = []
    for m, texts, p in zip(members, predictions, params, strict=True):
        if not m.alive:
            continue
        plot(loop, m)
        result = RunResult(m.config, loop.run.path / m.folder, device, m.history)
        result.predictions = dict(zip(PREFIXES, texts, strict=True))
        result.params = p
        result.summary = {**summarize(result, described, seconds), **(extra or {})}
        rundir.write_json(m.path(loop.run, rundir.SUMMARY), result.summary)
        results.append(result)
    return results


def _interrupted(
    loop: Loop,
    group: Any,
    members: Sequence[Member],
    done: int,
    saved: int,
    rngs: list[Any],
    epoch: int,
) -> RunInterrupted:
    """Save the last complete epoch (unless on disk already) and word the message."""
    base = members[0].config
    if done == 0:
        return interrupted_early(loop.run, epoch)
    if done > saved:
        save(loop, done, group.to_numpy(group.snapshot()), members, rngs)
    what = "" if loop.single else " of every member"
    where = loop.run.path / rundir.CHECKPOINT if loop.single else loop.run.path
    return RunInterrupted(
        f"interrupted during epoch {epoch} of {base.num_epochs}: epoch {done}{what} is saved "
        f"in {where}; resume with: python -m experiments.{base.section} --resume "
        f"{loop.run.path}"
    )


def interrupted_early(run: rundir.RunDir, epoch: int) -> RunInterrupted:
    """A run stopped before its first epoch was complete: nothing to save; an earlier result in
    its directory stays as it was."""
    kept = "the earlier result there is kept" if run.earlier else "nothing was saved"
    if run.pending:
        run.discard()
    return RunInterrupted(
        f"interrupted during epoch {epoch}, before any epoch was complete: {kept}"
    )


def _diverged(
    loop: Loop, config: RunConfig, saved: int, epoch: int, ppl: float, limit: float
) -> RunDiverged:
    run = loop.run
    if saved > 0:
        kept = f"the last good checkpoint (epoch {saved}) is kept in {run.path}"
    elif run.pending:
        run.discard()
        kept = f"the earlier result in {run.path} is kept" if run.earlier else "nothing was saved"
    else:
        kept = f"no epoch was saved; {rundir.METRICS} in {run.path} records the divergence"
    why = "" if config.max_perplexity is not None else " (4 x the vocabulary size)"
    return RunDiverged(
        f"epoch {epoch} diverged: the training perplexity is {ppl:.4g}, above "
        f"--max-perplexity {limit:g}{why}; {kept}. Lower --lr (now {config.lr:g}) or --theta "
        f"(now {config.theta:g})."
    )
