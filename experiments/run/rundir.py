"""The run directory: checked before a run starts, every file in it written atomically, an earlier
result replaced only once the new run has a checkpoint of its own.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``perplexity.png``,
``checkpoint.npz`` and, once the run is complete, ``summary.json``. Each file is written to a
temporary file in the same folder and moved into place with ``os.replace``, so a reader (or a
crash) never sees half a file.

A new run writes into ``DIR/.incoming`` until its first checkpoint, then moves its files into
``DIR`` (:meth:`RunDir.promote`), over an earlier result of either kind (``--overwrite``), which
it replaces whole: if it dies, diverges or is interrupted before that, an earlier result is
untouched and a new folder is left as it was (empty, or absent), so that a plain rerun is not
refused; what ``kill -9`` leaves (``.incoming``, temporary files) is cleaned by the next run or
resume (:func:`clean`). One process at a time writes a run directory (:func:`locked`).

Strict JSON has no NaN or infinity (Python would write ``NaN``/``Infinity``, which other readers
reject): such floats are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (``float()``
reads them back), so that ``null`` keeps meaning "not measured" (e.g. validation off).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.run.config import ConfigError
from numpy_ref.atomic import atomic_write

CONFIG = "config.json"
METRICS = "metrics.jsonl"
PLOT = "perplexity.png"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"
RUN_FILES = (CONFIG, METRICS, PLOT, SUMMARY, CHECKPOINT)
STAGING = ".incoming"
LOCK = ".lock"  # held by the one process that writes the run directory (experiments.run.lock)
RUN_FORMAT = "rnn-lm run"  # config.json's "format"
POPULATION = "population.json"  # a population's directory: its members, one run directory each
POPULATION_FORMAT = "rnn-lm population"
SPREAD = "spread.png"  # a population's plot of its members' spread


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`numpy_ref.atomic.atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float written as ``"nan"``, ``"inf"`` or ``"-inf"``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False)
    write_text_atomic(path, text + "\n")


def json_line(record: dict[str, Any]) -> str:
    """One line of a ``.jsonl`` file, newline included."""
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json_line(r) for r in records))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; ``ValueError`` naming the file and line if damaged."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number} is not JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError(f"{path} line {number} is not an epoch record")
            records.append(record)
    return records


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, pil_kwargs={"compress_level": 1})
    write_bytes_atomic(path, buffer.getvalue())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_population_dir(path: Path) -> bool:
    """Whether ``path`` holds a population of this project (``population.json``)."""
    found = _read_json(path / POPULATION)
    return isinstance(found, dict) and found.get("format") == POPULATION_FORMAT


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run of this project: a ``config.json`` of a run, or a population."""
    config = _read_json(path / CONFIG)
    legacy = {"section", "impl", "num_epochs"}  # run directories written before "format"
    single = isinstance(config, dict) and (
        config.get("format") == RUN_FORMAT or legacy <= set(config)
    )
    return single or is_population_dir(path)


def has_content(path: Path) -> bool:
    return path.is_dir() and any(
        p.name != STAGING and not p.name.startswith(LOCK) for p in path.iterdir()
    )


RESUME_FIX = (
    "give yourself write access (chmod u+w) or copy the run directory somewhere you can write"
)


def check_writable(path: str | os.PathLike[str], flag: str, fix: str = RESUME_FIX) -> None:
    """Refuse a folder this process cannot write (a temporary file is made and removed); the
    message names ``flag`` and ``fix``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{flag} {path} is not writable ({reason}): {fix}") from None


def check_run_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse ``path`` unless it is free, or ``overwrite`` and it is a run directory.

    Creates nothing (see :class:`RunDir`), so that every run of a command can be checked before
    the first one starts. Raises :class:`ConfigError` naming the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder: choose another --out")
    if not has_content(path):
        return path
    if not overwrite:
        raise ConfigError(
            f"run directory {path} already exists and is not empty: pass --overwrite to replace "
            f"its run, --resume {path} to continue it, or choose another --out"
        )
    if not is_run_dir(path):
        raise ConfigError(
            f"--overwrite: {path} is not a run directory of rnn-lm (it has no config.json of a "
            f"run), so nothing in it is replaced: choose another --out"
        )
    return path


def owned(path: Path) -> set[str]:
    """What the run directory ``path`` holds of this project, whatever its kind: a single run's
    files, a population's files and member folders (named by ``population.json``, or by their
    pattern when it does not read)."""
    names = {*RUN_FILES, POPULATION, SPREAD}
    names |= {p.name for p in path.glob("population.*.npz")}
    names |= {p.name for p in path.glob("seed*-lr*-theta*") if p.is_dir()}
    found = _read_json(path / POPULATION)
    if isinstance(found, dict) and isinstance(found.get("members"), list):
        listed = [m.get("name") for m in found["members"] if isinstance(m, dict)]
        names |= {n for n in listed if isinstance(n, str) and n.strip(".") and "/" not in n}
    return names


def clean(path: Path) -> None:
    """Remove what a process killed with ``kill -9`` left: the staging folder and the
    temporary files of atomic writes (``.checkpoint.npz.<pid>.<hex>.tmp``), in ``path`` and in
    its member folders. Only the lock's holder calls it, so no other writer owns them."""
    shutil.rmtree(path / STAGING, ignore_errors=True)
    names = owned(path)
    for folder in (path, *(path / n for n in names if (path / n).is_dir())):
        for tmp in folder.glob(".*.tmp"):
            if any(tmp.name.startswith(f".{n}.") for n in (*RUN_FILES, *names)):
                tmp.unlink(missing_ok=True)


class RunDir:
    """Where a run writes: its staging folder until its first checkpoint, then the directory.

    A new run writes into ``path/.incoming`` (:meth:`create`) and moves its files into ``path``
    at its first checkpoint (:meth:`promote`), replacing an earlier result of either kind
    whole; stopped before, it leaves nothing (:meth:`discard`). A member of a population that is
    still staged writes into the population's staging folder (``parent``), and its first
    checkpoint promotes the population.

    Args:
        path: the run directory.
        staged: write into ``path/.incoming`` until :meth:`promote`; else straight into ``path``.
        names: what the run owns, its checkpoint first (files or folders).
        earlier: ``path`` holds an earlier result (replaced at :meth:`promote`).
        parent: the staged population this member's folder is in.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        staged: bool,
        names: tuple[str, ...] = RUN_FILES,
        earlier: bool = False,
        parent: RunDir | None = None,
    ) -> None:
        self.path = Path(path)
        self.staged = staged
        self.names = names
        self._earlier = earlier
        self.parent = parent
        self.made = False  # ``path`` was made by :meth:`create` (removed again by discard)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        overwrite: bool,
        names: tuple[str, ...] | None = None,
        stage: bool = True,
    ) -> RunDir:
        """Check ``path`` (:func:`check_run_dir`), clean what a killed run left, make the
        staging folder (``stage``; not across processes, which share the directory), prove it
        writable."""
        path = check_run_dir(path, overwrite)
        run = cls(path, staged=stage, names=names or (CHECKPOINT, *RUN_FILES),
                  earlier=has_content(path))  # fmt: skip
        run.made = not path.exists()
        try:
            if path.is_dir():
                clean(path)
            run.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise ConfigError(
                f"--out {path} is not writable ({reason}): choose a folder you can write to"
            ) from None
        check_writable(run.folder, "--out", "choose a folder you can write to")
        return run

    @classmethod
    def member(cls, parent: RunDir, name: str) -> RunDir:
        """The folder of member ``name`` inside the staged population ``parent``."""
        return cls(parent.folder / name, staged=False, parent=parent)

    @classmethod
    def resumed(cls, path: str | os.PathLike[str], names: tuple[str, ...] = RUN_FILES) -> RunDir:
        """A run directory continued by ``--resume``: written in place, cleaned first."""
        clean(Path(path))
        return cls(path, staged=False, names=names)

    @property
    def earlier(self) -> bool:
        """Whether an earlier result stays in ``path`` until :meth:`promote`."""
        return self.parent.earlier if self.parent is not None else self._earlier

    @property
    def pending(self) -> bool:
        """Whether nothing of this run is in ``path`` yet (it, or its population, is staged)."""
        return self.parent.pending if self.parent is not None else self.staged

    @property
    def folder(self) -> Path:
        """The folder the run's files go to now."""
        return self.path / STAGING if self.staged else self.path

    def file(self, name: str) -> Path:
        return self.folder / name

    def promote(self) -> None:
        """Replace the earlier result, whatever its kind, by the files written so far; write in
        place from now on.

        The checkpoint moves first (it holds the config and the history), then everything the
        earlier result owned goes (:func:`owned`: a population's members and population.json
        under a single run, a single run's checkpoint and config under a population, an old
        summary), then the rest moves.
        """
        if self.parent is not None:
            if self.parent.pending:
                self.parent.promote()
                self.path = self.parent.path / self.path.name
            return
        if not self.staged:
            return
        staged = self.folder
        new = [name for name in dict.fromkeys(self.names) if (staged / name).exists()]
        old = owned(self.path) | set(self.names)
        for name in new[:1] + sorted(old - set(new)) + new[1:]:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            if name in new:
                os.replace(staged / name, target)
            else:
                target.unlink(missing_ok=True)
        shutil.rmtree(staged, ignore_errors=True)
        self.staged = False

    def discard(self) -> None:
        """Drop the staged files: an earlier result stays as it was, a new folder goes (a
        member's: its own folder; its population decides about the rest)."""
        if self.parent is not None:
            if self.parent.pending:
                shutil.rmtree(self.path, ignore_errors=True)
            return
        if self.staged:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self.made:
                with contextlib.suppress(OSError):
                    self.path.rmdir()
