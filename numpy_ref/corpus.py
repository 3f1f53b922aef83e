"""Where the book's corpus comes from: an explicit path, ``$RNN_LM_DATA_DIR``, the cache, or a
checked download; and the book's preprocessing of its lines (d2l 8.2).

Lookup order: an explicit ``path`` (any UTF-8 text, used as it is) → ``$RNN_LM_DATA_DIR/
timemachine.txt`` → ``~/.cache/rnn-lm/timemachine.txt`` (``$XDG_CACHE_HOME`` honoured) → a download
from the book's URL. The file found through the environment or the cache, and every download,
must have the book's sha1; a download is checked before anything is written, then written
atomically, so a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from pathlib import Path

from numpy_ref.atomic import atomic_write

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
DATA_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
FILE_NAME = "timemachine.txt"
DATA_DIR_ENV = "RNN_LM_DATA_DIR"


class CorpusUnavailableError(RuntimeError):
    """The corpus could be neither found on disk nor downloaded intact."""


def _manual_fix() -> str:
    return (
        f"Download {DATA_URL} by hand (sha1 {DATA_SHA1}) and pass its path as path=..., "
        f"or set ${DATA_DIR_ENV} to the folder that holds {FILE_NAME}."
    )


def cache_dir() -> Path:
    """Where a downloaded corpus is kept: ``$XDG_CACHE_HOME/rnn-lm``, else ``~/.cache/rnn-lm``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnn-lm"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _check_sha1(path: Path) -> Path:
    actual = _sha1(path)
    if actual != DATA_SHA1:
        raise CorpusUnavailableError(
            f"{path} has sha1 {actual}, but the book's {FILE_NAME} has {DATA_SHA1}: the file is "
            f"damaged or a different text. Delete or replace it. To train on another text on "
            f"purpose, pass its path as path=... (no checksum is checked there)."
        )
    return path


def _fetch(url: str, timeout: float = 30.0) -> bytes:
    """Read ``url`` whole (the one function that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_time_machine(directory: Path | None = None) -> Path:
    """Download the corpus into ``directory`` (default :func:`cache_dir`) and return its path.

    The bytes are checked (non-empty, sha1) before anything is written, then written atomically
    (:func:`numpy_ref.atomic.atomic_write`); on any failure nothing is left behind.
    """
    directory = cache_dir() if directory is None else Path(directory)
    try:
        data = _fetch(DATA_URL)
    except OSError as err:  # URLError, timeouts and resets are all OSErrors
        raise CorpusUnavailableError(
            f"Could not download {DATA_URL}: {err}. {_manual_fix()}"
        ) from err
    if not data:
        raise CorpusUnavailableError(f"The download of {DATA_URL} was empty. {_manual_fix()}")
    actual = hashlib.sha1(data).hexdigest()
    if actual != DATA_SHA1:
        raise CorpusUnavailableError(
            f"The download of {DATA_URL} has sha1 {actual}, expected {DATA_SHA1} "
            f"(a truncated or altered file). {_manual_fix()}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    return atomic_write(directory / FILE_NAME, lambda f: f.write(data))


def find_time_machine(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the corpus: ``path`` → ``$RNN_LM_DATA_DIR/timemachine.txt`` → cache → download.

    An explicit ``path`` may be any UTF-8 text file and is used as it is. The file found through the
    environment variable or the cache must be the book's (its sha1 is checked).
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Corpus file {path} does not exist (given as path=...).")
        return path
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir and (Path(env_dir) / FILE_NAME).is_file():
        return _check_sha1(Path(env_dir) / FILE_NAME)
    cached = cache_dir() / FILE_NAME
    if cached.is_file():
        return _check_sha1(cached)
    return download_time_machine()


def preprocess(line: str) -> str:
    """The book's cleaning: runs of non-letters → one space, stripped, lower case."""
    return re.sub("[^A-Za-z]+", " ", line).strip().lower()


def read_time_machine(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The corpus as the book's preprocessed lines (see :func:`find_time_machine` for ``path``)."""
    file = find_time_machine(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"Corpus file {file} is not UTF-8 text ({err.reason} at byte {err.start}). "
            f"Convert it to UTF-8, e.g. with iconv."
        ) from None
    return [preprocess(line) for line in text.splitlines()]
