"""``run_experiment(config) -> RunResult``: one training run, the book's ``train_ch8``, in Python.

Everything the command line prints is in the result (:meth:`RunResult.report_lines`) or passed to
the ``on_epoch`` callback; this module prints nothing.

Data: the vocabulary and the held-out part come from the whole text; ``split_corpus`` keeps its
last ``val_fraction`` as validation, and training uses the first ``max_tokens`` tokens of the rest
(the book's ``load_data_time_machine(32, 35, max_tokens=10000)``), so no validation token is ever
trained on. Validation runs the implementation's ``evaluate`` after every epoch, over sequential
minibatches from a loader seeded anew each time, so every epoch (and every implementation) sees
the same validation batches.
"""

from __future__ import annotations

import datetime
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments import rundir
from experiments.backends import Backend, make_backend
from experiments.config import SECTIONS, ConfigError, RunConfig, validate
from experiments.plots import plot_perplexity
from numpy_ref.checkpoint import save_checkpoint
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine, split_corpus
from numpy_ref.spec import ModelSpec, init_params

PREFIXES = ("time traveller", "traveller")


@dataclass
class EpochRecord:
    """One line of ``metrics.jsonl``; ``sample`` is the continuation printed every 10 epochs."""

    epoch: int  # 1-based
    train_perplexity: float
    val_perplexity: float | None
    tokens_per_sec: float
    seconds: float  # training wall time of the epoch (validation not included)
    sample: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_perplexity": self.train_perplexity,
            "val_perplexity": self.val_perplexity,
            "tokens_per_sec": self.tokens_per_sec,
            "seconds": self.seconds,
        }


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


@dataclass(frozen=True)
class Data:
    """The loaders and vocabulary of a run."""

    train: SeqDataLoader
    val_corpus: np.ndarray | None
    vocab: Any

    def val_loader(self, config: RunConfig) -> SeqDataLoader | None:
        if self.val_corpus is None:
            return None
        return SeqDataLoader(
            self.val_corpus, config.batch_size, config.num_steps, False, config.seed
        )


def load_data(config: RunConfig) -> Data:
    """Training loader over the first ``max_tokens`` of the training part, validation corpus."""
    try:
        corpus, vocab = load_corpus_time_machine(path=config.data_path)
    except (OSError, RuntimeError) as err:  # CorpusUnavailableError, FileNotFoundError
        raise ConfigError(str(err)) from None
    val = None
    if config.val_fraction > 0:
        corpus, val = split_corpus(corpus, config.val_fraction)
    train = corpus[: config.max_tokens] if config.max_tokens > 0 else corpus
    try:
        loader = SeqDataLoader(
            train, config.batch_size, config.num_steps, config.loader_random, config.seed
        )
        if val is not None:  # fail now, not after the first epoch
            SeqDataLoader(val, config.batch_size, config.num_steps, False, config.seed)
    except ValueError as err:
        raise ConfigError(f"--batch-size/--num-steps/--max-tokens/--val-fraction: {err}") from None
    return Data(loader, val, vocab)


def model_spec(config: RunConfig, vocab_size: int) -> ModelSpec:
    return ModelSpec(
        config.kind, vocab_size, config.num_hiddens, config.num_layers, config.gru_reset
    )


def title(config: RunConfig) -> str:
    section = SECTIONS[config.section]
    return (
        f"d2l {section.book} {section.title}: {config.impl}, {config.iter}, "
        f"H={config.num_hiddens}, L={config.num_layers}, lr={config.lr:g}"
    )


def start(config: RunConfig) -> tuple[Backend, Data]:
    """Every check that needs no training: settings, implementation, corpus, run directory.

    Raises :class:`ConfigError` (or its subclass ``ImplUnavailableError``) before anything is
    written, except the run directory itself.
    """
    validate(config)
    backend = make_backend(config)
    rundir.check_run_dir(config.out, config.overwrite)
    data = load_data(config)
    return backend, data


def run_experiment(
    config: RunConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checked: tuple[Backend, Data] | None = None,
) -> RunResult:
    """Train ``config``'s model from ``init_params(spec, config.seed)`` and write its run directory.

    Args:
        config: the run's settings.
        on_epoch: called after every epoch with its record (the CLI prints and ticks from it).
        checked: what :func:`start` returned, when the caller already ran it.

    Returns:
        The :class:`RunResult`; the same figures are in the run directory's files.
    """
    backend, data = checked if checked is not None else start(config)
    out = rundir.prepare_run_dir(config.out, config.overwrite)
    spec = model_spec(config, len(data.vocab))
    model = backend.prepare(spec, init_params(spec, config.seed, np.float32))
    result = RunResult(config, out, backend.device)
    described = backend.describe()
    rundir.write_json(out / rundir.CONFIG, {**config.to_dict(), "spec": spec.to_dict()})
    started = time.perf_counter()
    for epoch in range(1, config.num_epochs + 1):
        model, stats = backend.train_epoch(
            model, data.train, config.lr, config.theta, config.use_random_iter
        )
        val_loader = data.val_loader(config)
        val = None if val_loader is None else backend.evaluate(model, val_loader)
        sample = None
        if epoch % config.predict_every == 0:
            sample = backend.predict(model, PREFIXES[0], config.num_preds, data.vocab)
        record = EpochRecord(
            epoch, stats.perplexity, val, stats.tokens_per_sec, stats.seconds, sample
        )
        result.history.append(record)
        rundir.write_jsonl(out / rundir.METRICS, (r.to_dict() for r in result.history))
        if not math.isfinite(stats.perplexity):
            raise FloatingPointError(
                f"epoch {epoch}: the training perplexity is {stats.perplexity}; the run "
                f"diverged. Lower --lr (now {config.lr:g}) or --theta (now {config.theta:g})."
            )
        if sample is not None:
            plot_perplexity([r.to_dict() for r in result.history], out / rundir.PLOT, title(config))
        if on_epoch is not None:
            on_epoch(record)
    seconds_total = time.perf_counter() - started
    result.predictions = {
        p: backend.predict(model, p, config.num_preds, data.vocab) for p in PREFIXES
    }
    result.params = backend.to_numpy(model)
    plot_perplexity([r.to_dict() for r in result.history], out / rundir.PLOT, title(config))
    write_checkpoint(out / rundir.CHECKPOINT, spec, result, data)
    result.summary = summarize(result, described, seconds_total)
    rundir.write_json(out / rundir.SUMMARY, result.summary)
    return result


def write_checkpoint(path: Path, spec: ModelSpec, result: RunResult, data: Data) -> None:
    """The final parameters in numpy_ref's checkpoint format (loadable by every impl).

    The metadata holds the run's config, its per-epoch records and the training loader's
    generator state (what the next epoch's offset would be drawn from).
    """
    save_checkpoint(
        path,
        spec,
        result.params,
        data.vocab,
        config=result.config.to_dict(),
        epoch=len(result.history),
        history=[r.to_dict() for r in result.history],
        rng_state=data.train.rng.bit_generator.state,
    )


def _versions() -> dict[str, str]:
    import matplotlib

    return {"python": platform.python_version(), "numpy": np.__version__,
            "matplotlib": matplotlib.__version__}  # fmt: skip


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
        "epochs": len(result.history),
        "train_perplexity": last.train_perplexity,
        "val_perplexity": last.val_perplexity,
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
        "checkpoint": rundir.CHECKPOINT,
    }
