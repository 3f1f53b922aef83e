"""Checkpoints: one ``.npz`` file readable by every implementation.

The file is a NumPy ``.npz`` archive holding

- every parameter array under its :func:`numpy_ref.spec.flatten_params` key (``layers.0.W_xh``,
  ..., ``W_hq``, ``b_q``), in its own dtype;
- ``__metadata__``: a 0-d string array of JSON with ``format`` (``"rnn-lm checkpoint"``),
  ``format_version``, ``spec`` (:meth:`ModelSpec.to_dict`), ``vocab`` (:meth:`Vocab.to_dict`),
  ``config``, ``epoch``, ``history`` and ``rng_state``.

It is written atomically: to a temporary file in the target's directory, flushed and fsync'ed,
then renamed over the target with ``os.replace``, so a crash leaves the old file or the new one,
never half of one. It loads without pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numpy_ref.atomic import atomic_write
from numpy_ref.checks import is_int
from numpy_ref.loops import EpochStats
from numpy_ref.spec import (
    ModelSpec,
    Params,
    check_params,
    check_vocab_size,
    flatten_params,
    unflatten_params,
)
from numpy_ref.vocab import Vocab

FORMAT = "rnn-lm checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"
_EPOCH_STATS_FIELDS = {f.name for f in dataclasses.fields(EpochStats)}
_EPOCH_STATS_REQUIRED = {"perplexity", "tokens_per_sec", "num_tokens", "seconds"}


class CheckpointError(ValueError):
    """A checkpoint file is damaged, of another format or version, or does not fit the caller."""


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        spec: the model.
        params: the parameter dict, NumPy arrays in the dtype they were saved in.
        vocab: the vocabulary.
        config: the training configuration saved with it (a JSON object), or None.
        epoch: the number of epochs trained.
        history: one entry per epoch: :class:`EpochStats`, or the dict that was saved.
        rng_state: a generator state (e.g. ``rng.bit_generator.state``), or None.
    """

    spec: ModelSpec
    params: Params
    vocab: Vocab
    config: Any = None
    epoch: int = 0
    history: list[Any] = field(default_factory=list)
    rng_state: Any = None


def _history_to_json(history: Sequence[Any]) -> list[Any]:
    return [dataclasses.asdict(h) if isinstance(h, EpochStats) else h for h in history]


def _history_from_json(history: list[Any]) -> list[Any]:
    """Dicts that are :class:`EpochStats` (with or without ``grad_norms``) become EpochStats."""
    return [
        EpochStats(**{**h, "grad_norms": tuple(h.get("grad_norms", ()))})
        if isinstance(h, dict) and _EPOCH_STATS_REQUIRED <= set(h) <= _EPOCH_STATS_FIELDS
        else h
        for h in history
    ]


def _config_to_json(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def save_checkpoint(
    path: str | os.PathLike[str],
    spec: ModelSpec,
    params: Params,
    vocab: Vocab,
    *,
    config: Any = None,
    epoch: int = 0,
    history: Sequence[Any] = (),
    rng_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (module docstring).

    Args:
        path: the file to write (written as given; ``.npz`` is the usual suffix).
        spec: the model.
        params: the parameters, NumPy or JAX arrays (taken with ``np.asarray``).
        vocab: the vocabulary; its size must be ``spec.vocab_size``.
        config: JSON-able training configuration (a dataclass is stored as its dict), or None.
        epoch: epochs trained so far.
        history: per-epoch :class:`EpochStats` or JSON-able dicts.
        rng_state: JSON-able generator state, e.g. ``rng.bit_generator.state``.

    Returns:
        The path written.
    """
    path = Path(path)
    arrays = {key: np.asarray(value) for key, value in flatten_params(params).items()}
    check_params(spec, unflatten_params(arrays))
    check_vocab_size(spec, vocab)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "vocab": vocab.to_dict(),
        "config": _config_to_json(config),
        "epoch": int(epoch),
        "history": _history_to_json(history),
        "rng_state": rng_state,
    }
    try:
        text = json.dumps(metadata)
    except TypeError as err:
        raise ValueError(
            f"config, history and rng_state must be JSON-serialisable (dicts, lists, str, "
            f"numbers, None): {err}"
        ) from err
    arrays[METADATA_KEY] = np.array(text)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz``, read now (a damaged member fails here, not later)."""
    if not os.access(path, os.R_OK):
        raise CheckpointError(
            f"{path} cannot be read (permission denied): give yourself read access (chmod u+r)"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or damaged?): it is not a complete "
            f".npz archive. Load a checkpoint.npz written by rnn-lm, or re-save it."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or damaged?): "
            f"{type(err).__name__}: {err}. Re-save it, or load another checkpoint."
        ) from err


def _spec_diff(a: ModelSpec, b: ModelSpec) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: file {da[k]!r} vs given {db[k]!r}" for k in da if da[k] != db[k])


def _vocab_diff(a: Vocab, b: Vocab) -> str:
    if len(a) != len(b):
        return f"file has {len(a)} tokens, given has {len(b)}"
    index = next(
        i for i, (s, t) in enumerate(zip(a.idx_to_token, b.idx_to_token, strict=True)) if s != t
    )
    return (
        f"index {index} is {a.idx_to_token[index]!r} in the file, {b.idx_to_token[index]!r} given"
    )


def load_checkpoint(
    path: str | os.PathLike[str], spec: ModelSpec | None = None, vocab: Vocab | None = None
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (by either implementation).

    Args:
        path: the checkpoint file.
        spec: if given, the file's spec must equal it.
        vocab: if given, the file's vocabulary must equal it (same tokens in the same order).

    Returns:
        The :class:`Checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a damaged or truncated file, another format or version, parameters that
            do not fit the file's spec, or a spec/vocabulary different from the ones given.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path (or the run directory)")
    arrays = _read_archive(path)
    if METADATA_KEY not in arrays:
        raise CheckpointError(
            f"{path} is an .npz without {METADATA_KEY!r}: not an rnn-lm checkpoint; "
            f"write checkpoints with save_checkpoint"
        )
    try:
        metadata = json.loads(str(arrays.pop(METADATA_KEY)[()]))
    except (json.JSONDecodeError, IndexError, ValueError) as err:
        raise CheckpointError(f"{path}: the metadata is damaged ({err}); re-save it") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rnn-lm checkpoint (format {FORMAT!r} expected)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this code reads version "
            f"{FORMAT_VERSION}. Load it with the rnn-lm version that wrote it, or re-save it."
        )
    try:
        file_spec = ModelSpec.from_dict(metadata["spec"])
        file_vocab = Vocab.from_dict(metadata["vocab"])
        check_vocab_size(file_spec, file_vocab)
        epoch = metadata.get("epoch", 0)
        if not is_int(epoch, 0):
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        history = metadata.get("history", [])
        if not isinstance(history, list) or len(history) > epoch:
            raise ValueError(f"history must be a list of at most {epoch} epochs")
        rng_state = metadata.get("rng_state")
        if rng_state is not None:
            np.random.default_rng().bit_generator.state = rng_state  # a state numpy accepts
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the metadata is damaged ({err}); re-save it") from err
    if spec is not None and spec != file_spec:
        raise CheckpointError(
            f"{path} holds a model with another spec ({_spec_diff(file_spec, spec)}); "
            f"build the model from the checkpoint (load_checkpoint(path).spec) or pick another file"
        )
    if vocab is not None and vocab != file_vocab:
        raise CheckpointError(
            f"{path} was saved with another vocabulary ({_vocab_diff(file_vocab, vocab)}); "
            f"use the checkpoint's vocabulary (load_checkpoint(path).vocab)"
        )
    try:
        params = unflatten_params(arrays)
        check_params(file_spec, params)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: the parameters do not match its spec: {err}") from err
    return Checkpoint(
        spec=file_spec,
        params=params,
        vocab=file_vocab,
        config=metadata.get("config"),
        epoch=int(epoch),
        history=_history_from_json(history),
        rng_state=rng_state,
    )
