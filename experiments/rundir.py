"""The run directory: checked before a run starts, every file in it written atomically.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``perplexity.png``,
the final checkpoint and ``summary.json``. Each file is written to a temporary file in the same
folder and moved into place with ``os.replace``, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.config import ConfigError
from numpy_ref.atomic import atomic_write

CONFIG = "config.json"
METRICS = "metrics.jsonl"
PLOT = "perplexity.png"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"
RUN_FILES = (CONFIG, METRICS, PLOT, SUMMARY, CHECKPOINT)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`numpy_ref.atomic.atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: strict JSON has no such numbers
    (Python would write ``NaN``/``Infinity``, which other readers reject)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    text = json.dumps(finite_or_none(obj), indent=2, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    lines = (json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in records)
    write_text_atomic(path, "".join(lines))


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_bytes_atomic(path, buffer.getvalue())


def check_run_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse a non-empty ``path`` unless ``overwrite``; raise :class:`ConfigError` otherwise.

    Creates nothing (see :func:`prepare_run_dir`), so that every run of a command can be checked
    before the first one starts.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder: choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ConfigError(
            f"run directory {path} already exists and is not empty: pass --overwrite to replace "
            f"its run files, or choose another --out"
        )
    return path


def prepare_run_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create ``path`` (after :func:`check_run_dir`), prove it writable, clear old run files.

    With ``overwrite`` only the files a run writes are removed; anything else stays.
    """
    path = check_run_dir(path, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"--out {path} is not writable ({reason}): choose a folder you can write to"
        ) from None
    if overwrite:
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
    return path
