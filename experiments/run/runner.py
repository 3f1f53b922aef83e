"""``run_experiment(config) -> RunResult``: one durable training run, the book's ``train_ch8``.

Everything the command line prints is in the result (:meth:`RunResult.report_lines`), passed to
the ``on_epoch`` callback, or the message of a :class:`RunStopped`; this module prints nothing.

Data: the vocabulary and the held-out part come from the whole text; ``split_corpus`` keeps its
last ``val_fraction`` as validation, and training uses the first ``max_tokens`` tokens of the rest
(the book's ``load_data_time_machine(32, 35, max_tokens=10000)``), so no validation token is ever
trained on. Validation runs the implementation's ``evaluate`` every ``val_every`` epochs and
after the last, over sequential minibatches from a loader seeded anew each time, so every
validation (and every implementation) sees the same batches.

The loop itself is :mod:`experiments.run.loop`'s, for a single run as for a population.
Durability: after epoch 1, every ``checkpoint_every`` epochs and after the last, the checkpoint
(parameters, epoch, the training loader's generator state, the history, the config) is rewritten
atomically; ``metrics.jsonl`` gets a line after every epoch. A run asked to stop (``stop()``
turns True, e.g. on SIGINT) ends the chunk of minibatches under way, saves the last completed
epoch and raises :class:`RunInterrupted`; a non-finite or too high training perplexity raises
:class:`RunDiverged` with the last good checkpoint kept. ``resume=True`` continues a run from its
checkpoint: the generator state, parameters and history are the ones the uninterrupted run had
after that epoch, so the continuation is bit-identical on the same device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from experiments.run import loop, rundir, runtime
from experiments.run.backends import Backend, make_backend
from experiments.run.config import SECTIONS, ConfigError, RunConfig, validate
from experiments.run.loop import RunWriteError
from experiments.run.records import EpochRecord, RunResult
from numpy_ref.checkpoint import CheckpointError, load_checkpoint
from numpy_ref.corpus import find_time_machine
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine, min_corpus_length, split_corpus
from numpy_ref.spec import ModelSpec, init_params

RESUMABLE = ("num_epochs", "device", "checkpoint_every", "val_every")  # what --resume may change


@dataclass(frozen=True)
class Data:
    """The loaders and vocabulary of a run."""

    train: SeqDataLoader
    val_corpus: np.ndarray | None
    vocab: Any
    file: Path | None = None  # the text read
    sha1: str | None = None  # its SHA-1

    def val_loader(self, config: RunConfig) -> SeqDataLoader | None:
        if self.val_corpus is None:
            return None
        return SeqDataLoader(
            self.val_corpus, config.batch_size, config.num_steps, False, config.seed
        )


def load_data(config: RunConfig) -> Data:
    """Training loader over the first ``max_tokens`` of the training part, validation corpus."""
    data_flag = f"--data {config.data_path}" if config.data_path else "the corpus"
    try:
        file = find_time_machine(config.data_path)
        corpus, vocab = load_corpus_time_machine(path=file)
        sha1 = file_sha1(file)
    except (OSError, RuntimeError, ValueError) as err:  # not found, unreadable, not a text
        raise ConfigError(str(err)) from None
    val = None
    if config.val_fraction > 0:
        try:
            corpus, val = split_corpus(corpus, config.val_fraction)
        except ValueError:
            raise ConfigError(
                f"{data_flag} has {len(corpus):,} tokens: too few to hold out "
                f"--val-fraction {config.val_fraction}; use a longer text or --val-fraction 0"
            ) from None
    train = corpus[: config.max_tokens] if config.max_tokens > 0 else corpus
    for part, tokens, random in (("training", train, config.loader_random), ("validation", val,
                                                                             False)):  # fmt: skip
        needed = min_corpus_length(config.batch_size, config.num_steps, random)
        if tokens is not None and len(tokens) < needed:
            held = f", the last {config.val_fraction:.0%} held out" if config.val_fraction else ""
            raise ConfigError(
                f"the {part} part of {data_flag} has {len(tokens):,} tokens (the text has "
                f"{len(corpus) + (0 if val is None else len(val)):,}{held}); one minibatch of "
                f"--batch-size {config.batch_size} x --num-steps {config.num_steps} needs "
                f"{needed:,}: use a longer text, smaller sizes, --max-tokens -1 or "
                f"--val-fraction 0"
            )
    loader = SeqDataLoader(
        train, config.batch_size, config.num_steps, config.loader_random, config.seed
    )
    return Data(loader, val, vocab, Path(file).resolve(), sha1)


def file_sha1(path: str | Path) -> str:
    """The SHA-1 of a file's bytes, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_resumed_corpus(config: RunConfig, data: Data, checkpoint: Path) -> None:
    """A resumed run reads the text it was trained on: the same SHA-1 unless ``--data`` was
    given on purpose (then ``config.data_sha1`` is None), and in any case the same vocabulary.

    Raises:
        ConfigError: another text (its SHA-1 differs), or another vocabulary, in one line.
    """
    run = Path(config.out)
    if config.data_sha1 is not None and data.sha1 != config.data_sha1:
        raise ConfigError(
            f"--resume {run}: the corpus {data.file} is not the text the run was trained on "
            f"(SHA-1 {data.sha1[:12]}, the run's {config.data_sha1[:12]}): give the run's text, "
            f"or --data {data.file} to go on with this one on purpose"
        )
    try:
        saved = load_checkpoint(checkpoint)
    except (OSError, CheckpointError) as err:
        raise ConfigError(f"--resume {run}: {err}") from None
    if saved.vocab != data.vocab:
        raise ConfigError(
            f"--resume {run}: the corpus {data.file} has another vocabulary than the run's "
            f"({len(data.vocab)} tokens, the run's {len(saved.vocab)}, or in another order): "
            f"resume with the text the run was trained on"
        )


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


def start(config: RunConfig, resume: bool = False) -> tuple[Backend, Data]:
    """Every check that needs no training: settings, implementation, run directory, corpus,
    memory. Raises :class:`ConfigError` (or its subclass ``ImplUnavailableError``) before
    anything is written."""
    validate(config)
    if not resume:
        rundir.check_run_dir(config.out, config.overwrite)
    backend = make_backend(config)
    data = load_data(config)
    if resume:
        rundir.check_writable(config.out, "--resume")
        check_resumed_corpus(config, data, Path(config.out) / rundir.CHECKPOINT)
    runtime.check_memory(config, len(data.vocab))
    return backend, data


def resume_config(path: str | Path, section: str, given: dict[str, Any]) -> RunConfig:
    """The config of the run saved in ``path``, with the changes ``--resume`` allows.

    Args:
        path: the run directory.
        section: the section of the command (it must be the run's).
        given: the settings set on the command line (None: not given).

    Raises:
        ConfigError: no readable checkpoint, another section, a flag that conflicts.
    """
    path = Path(path)
    file = path / rundir.CHECKPOINT
    if not file.is_file():
        raise ConfigError(f"--resume {path}: no {rundir.CHECKPOINT} there: nothing to resume")
    try:
        ckpt = load_checkpoint(file)
        saved = RunConfig.from_dict(ckpt.config)
    except (CheckpointError, TypeError, AttributeError) as err:
        raise ConfigError(f"--resume {path}: {err}") from None
    if saved.section != section:
        raise ConfigError(
            f"--resume {path} is a {saved.section} run: resume it with "
            f"python -m experiments.{saved.section} --resume {path}"
        )
    for name, value in given.items():
        if value is None or name in RESUMABLE or name in ("out", "command", "overwrite"):
            continue
        if name == "data_path":  # given on purpose: checked by its vocabulary (start)
            continue
        if getattr(saved, name) != value:
            raise ConfigError(
                f"--resume {path}: {name} {value!r} conflicts with the run's {name} "
                f"{getattr(saved, name)!r}; a resumed run keeps its settings (only --epochs, "
                f"--device and --checkpoint-every may change): drop the flag"
            )
    changes = {k: given[k] for k in RESUMABLE if given.get(k) is not None}
    total = changes.get("num_epochs", saved.num_epochs)
    unfinished = ckpt.epoch == total and load_finished(path) is None  # (a write failed at the end)
    if ckpt.epoch > total or ckpt.epoch == total and not unfinished:
        raise ConfigError(
            f"--resume {path}: the run has done {ckpt.epoch} of its {total} epochs: nothing to "
            f"resume; pass --epochs N with N > {ckpt.epoch} to train it further"
            if ckpt.epoch == total
            else f"--resume {path}: the run has done {ckpt.epoch} epochs, more than --epochs "
            f"{total}: a resumed run only trains further; pass --epochs N with N > {ckpt.epoch}"
        )
    resumed_at = (*saved.resumed_at, ckpt.epoch)
    if given.get("data_path") is not None:  # another text on purpose: its SHA-1 recorded anew
        changes.update(data_path=given["data_path"], data_sha1=None)
    return replace(saved, out=str(path), overwrite=False, resumed_at=resumed_at, **changes)


def run_experiment(
    config: RunConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checked: tuple[Backend, Data] | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = False,
    run: rundir.RunDir | None = None,
) -> RunResult:
    """Train ``config``'s model from ``init_params(spec, config.seed)`` (or, with ``resume``,
    from the checkpoint in ``config.out``) and write its run directory: the host loop
    (:mod:`experiments.run.loop`) over a group of one member.

    Args:
        config: the run's settings.
        on_epoch: called after every epoch with its record (the CLI prints and ticks from it).
        checked: what :func:`start` returned, when the caller already ran it.
        stop: polled between chunks of minibatches; True ends the run with
            :class:`RunInterrupted`.
        resume: continue the run saved in ``config.out`` (see :func:`resume_config`).
        run: where to write, when not ``config.out`` as it is (a member of a staged population).

    Returns:
        The :class:`RunResult`; the same figures are in the run directory's files.

    Raises:
        RunInterrupted, RunDiverged, RunWriteError: the run ended early (module docstring).
    """
    backend, data = checked if checked is not None else start(config, resume)
    if config.data_sha1 is None:
        config = replace(config, data_sha1=data.sha1)
    spec = model_spec(config, len(data.vocab))
    member = loop.Member(config, Path(), data.train)
    if resume:
        run = rundir.RunDir.resumed(config.out)
        ckpt = load_checkpoint(run.file(rundir.CHECKPOINT), spec=spec, vocab=data.vocab)
        params, member.history = ckpt.params, [EpochRecord.from_dict(h) for h in ckpt.history]
        data.train.rng.bit_generator.state = ckpt.rng_state
    else:
        run = run or rundir.RunDir.create(config.out, config.overwrite)
        params = init_params(spec, config.seed, np.float32)
    val = None if data.val_corpus is None else (lambda: [data.val_loader(config)])
    context = loop.Loop(run, spec, data.vocab, val, title)
    try:
        group = backend.group(spec, [params], [config], data)
        loop.start_files(context, [member])
        first = len(member.history) + 1
        callback = None if on_epoch is None else (lambda epoch, records: on_epoch(records[0]))
        seconds = loop.train(context, group, [member], first, callback, stop)
        (result,) = loop.finish(context, group, [member], backend.describe(), seconds,
                                backend.device)  # fmt: skip
    except OSError as err:
        saved = context.saved
        where = f" (epoch {saved} is saved in {run.path / rundir.CHECKPOINT})" if saved else ""
        raise RunWriteError(
            f"could not write the run's files in {run.path}: {err.strerror or err}{where}"
        ) from None
    return result


def load_finished(path: str | Path) -> RunResult | None:
    """The result of a finished run read back from its directory (None if it has not finished:
    no ``summary.json``, or files that do not read)."""
    path = Path(path)
    try:
        summary = json.loads((path / rundir.SUMMARY).read_text(encoding="utf-8"))
        config = RunConfig.from_dict(json.loads((path / rundir.CONFIG).read_text("utf-8")))
        history = [EpochRecord.from_dict(r) for r in rundir.read_metrics(path / rundir.METRICS)]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not history or len(history) != summary.get("epochs"):
        return None
    result = RunResult(config, path, summary.get("device", ""), history)
    result.predictions, result.summary = summary.get("predictions", {}), summary
    return result
