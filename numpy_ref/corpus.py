"""Where the book's corpus comes from: an explicit path, ``$RNN_LM_DATA_DIR``, the cache, or a
checked download; which files can be used; and the book's preprocessing of its lines (d2l 8.2).

Lookup order: an explicit ``path`` (any UTF-8 text, used as it is) → ``$RNN_LM_DATA_DIR/
timemachine.txt`` → ``~/.cache/rnn-lm/timemachine.txt`` (``$XDG_CACHE_HOME`` honoured) → a download
from the book's URL. The file found through the environment or the cache, and every download,
must have the book's sha1; a download is checked before anything is written, then written
atomically, so a failure leaves nothing behind.

The book's preprocessing, ``re.sub('[^A-Za-z]+', ' ', line).strip().lower()`` for every line of
``text.splitlines()``, is also written here on the file's bytes, chunk by chunk, without a Python
object per character: :func:`read_chunks` (UTF-8 checked on the way), :func:`classify` (letter,
line break, other), :func:`book_chars` and :func:`letter_runs`.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from numpy_ref.atomic import atomic_write

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
DATA_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
FILE_NAME = "timemachine.txt"
DATA_DIR_ENV = "RNN_LM_DATA_DIR"
# How a user names a corpus file: the same message serves the library and the command line.
USE_PATH = "path=... (Python) / --data FILE (the experiments)"
CHUNK_BYTES = 1 << 18  # bytes read and scanned at a time (chunks hold whole letter runs)


class CorpusUnavailableError(RuntimeError):
    """The corpus could be neither found on disk nor downloaded intact."""


class CorpusError(ValueError):
    """A corpus file that cannot be used (missing, a folder, empty, binary, not UTF-8, no letters,
    too short); the message names the file, the problem and the fix."""


def _manual_fix() -> str:
    return (
        f"Download {DATA_URL} by hand (sha1 {DATA_SHA1}) and pass its path as {USE_PATH}, "
        f"or set ${DATA_DIR_ENV} to the folder that holds {FILE_NAME}."
    )


def cache_dir() -> Path:
    """Where a downloaded corpus is kept: ``$XDG_CACHE_HOME/rnn-lm``, else ``~/.cache/rnn-lm``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnn-lm"


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha1(path: Path) -> Path:
    actual = _sha1(path)
    if actual != DATA_SHA1:
        raise CorpusUnavailableError(
            f"{path} has sha1 {actual}, but the book's {FILE_NAME} has {DATA_SHA1}: the file is "
            f"damaged or a different text. Delete or replace it. To train on another text on "
            f"purpose, pass its path as {USE_PATH} (no checksum is checked there)."
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


def check_corpus_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a non-empty regular file, else a
    :class:`CorpusError` saying what it is instead (missing, a folder, a device, empty)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CorpusError(
            f"Corpus file {path} does not exist. Check the name given as {USE_PATH}."
        ) from None
    except OSError as err:
        raise CorpusError(
            f"Corpus file {path} cannot be read: {err.strerror}. Check its permissions."
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise CorpusError(
            f"Corpus file {path} is a directory, not a file. Pass the text file inside it, e.g. "
            f"path='{path / FILE_NAME}' (Python) / --data {path / FILE_NAME} (the experiments), "
            f"or set ${DATA_DIR_ENV}={path} for the book's {FILE_NAME} there."
        )
    if not stat.S_ISREG(info.st_mode):
        raise CorpusError(
            f"Corpus file {path} is not a regular file (a device, socket or pipe). "
            f"Pass a UTF-8 text file as {USE_PATH}."
        )
    if info.st_size == 0:
        raise CorpusError(
            f"Corpus file {path} is empty (0 bytes). Pass a UTF-8 text file as {USE_PATH}."
        )
    return path


def find_time_machine(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the corpus: ``path`` → ``$RNN_LM_DATA_DIR/timemachine.txt`` → cache → download.

    An explicit ``path`` may be any UTF-8 text file and is used as it is (:func:`check_corpus_file`
    refuses a missing, empty or non-regular one). The file found through the environment variable
    or the cache must be the book's (its sha1 is checked); a variable that names a folder without
    ``timemachine.txt`` is an error, not skipped.
    """
    if path is not None:
        return check_corpus_file(path)
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        if not Path(env_dir).is_dir():
            what = "names a file" if Path(env_dir).exists() else "does not exist"
            raise CorpusUnavailableError(
                f"${DATA_DIR_ENV}={env_dir} {what}; it must be the folder that holds the book's "
                f"{FILE_NAME}. Point it at that folder, or unset it to use the cache "
                f"({cache_dir()}) and a download; to use another text, pass it as {USE_PATH}."
            )
        if not (Path(env_dir) / FILE_NAME).is_file():
            raise CorpusUnavailableError(
                f"${DATA_DIR_ENV}={env_dir} points to a folder without {FILE_NAME}. Put the "
                f"book's {FILE_NAME} there (sha1 {DATA_SHA1}), point ${DATA_DIR_ENV} at the folder "
                f"that holds it, or unset it to use the cache ({cache_dir()}) and a download."
            )
        return _check_sha1(Path(env_dir) / FILE_NAME)
    cached = cache_dir() / FILE_NAME
    if cached.is_file():
        return _check_sha1(cached)
    return download_time_machine()


def preprocess(line: str) -> str:
    """The book's cleaning: runs of non-letters → one space, stripped, lower case."""
    return re.sub("[^A-Za-z]+", " ", line).strip().lower()


def read_time_machine(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The corpus as the book's preprocessed lines (see :func:`find_time_machine` for ``path``).

    Decodes the whole text at once: meant for statistics and tests; the loaders of
    :mod:`numpy_ref.data` scan the bytes instead.

    Raises:
        CorpusError: the file is not UTF-8 or holds no letters (and see :func:`find_time_machine`).
    """
    file = find_time_machine(path)
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8_error(file, err.reason, err.start, data[:8192]) from None
    lines = [preprocess(line) for line in text.splitlines()]
    if not any(lines):
        raise no_letters_error(file)
    return lines


# --- error messages for the contents of a file -------------------------------------------------


def not_utf8_error(file: Path, reason: str, offset: int, head: bytes) -> CorpusError:
    """The error for a file that fails to decode at byte ``offset``; ``head`` is its start."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte order mark
        return CorpusError(
            f"Corpus file {file} is UTF-16 text, not UTF-8 (it starts with a UTF-16 byte order "
            f"mark). Convert it, e.g. `iconv -f UTF-16 -t UTF-8 '{file}' > '{file}.utf8'`, and "
            f"pass the new file as {USE_PATH}."
        )
    if b"\x00" in head:
        return CorpusError(
            f"Corpus file {file} is not text: it is not UTF-8 ({reason} at byte {offset}) and it "
            f"holds NUL bytes, as binary files (programs, archives, images) do. "
            f"Pass a UTF-8 text file as {USE_PATH}."
        )
    return CorpusError(
        f"Corpus file {file} is not UTF-8 text ({reason} at byte {offset}). Convert it to "
        f"UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 '{file}' > '{file}.utf8'` (with its real "
        f"encoding after -f), and pass the new file as {USE_PATH}."
    )


def no_letters_error(file: Path) -> CorpusError:
    """The error for a file without a single letter A-Z or a-z: it yields no tokens."""
    with open(file, "rb") as f:
        nul = b"\x00" in f.read(8192)
    hint = " It holds NUL bytes, as binary or damaged files do." if nul else ""
    return CorpusError(
        f"Corpus file {file} holds no letters (A-Z, a-z), so it yields no tokens and cannot be "
        f"trained on.{hint} Pass a text with letters as {USE_PATH}."
    )


# --- the book's preprocessing on bytes ----------------------------------------------------------

# Byte classes. A UTF-8 byte is a letter only if it is ASCII A-Z or a-z. The line breaks are those
# of str.splitlines: \n \v \f \r and \x1c \x1d \x1e (one byte each), U+0085 (C2 85) and
# U+2028/U+2029 (E2 80 A8/A9); C2 and E2 are marked MAYBE until the next bytes are checked.
OTHER, LETTER, BREAK, MAYBE = 0, 1, 2, 3
_CLASSES = np.zeros(256, np.uint8)
_CLASSES[np.r_[ord("A") : ord("Z") + 1, ord("a") : ord("z") + 1]] = LETTER
_CLASSES[np.r_[0x0A:0x0E, 0x1C:0x1F]] = BREAK
_CLASSES[[0xC2, 0xE2]] = MAYBE
SPACE = ord(" ")


def read_chunks(file: Path, chunk_bytes: int | None = None) -> Iterator[np.ndarray]:
    """The file's bytes as uint8 chunks of about ``chunk_bytes``, each checked to be UTF-8.

    A chunk ends where a UTF-8 character starts and no letter run goes on, so every chunk holds
    whole characters and whole words (a word longer than a chunk makes a longer chunk).

    Raises:
        CorpusError: at the first byte that is not UTF-8, naming its offset in the file.
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    offset = 0  # of the first pending byte in the file
    pending = np.empty(0, np.uint8)
    try:
        f = open(file, "rb")  # closed by the with below, when the generator ends or is closed
    except OSError as err:
        raise CorpusError(
            f"Corpus file {file} cannot be read: {err.strerror}. Check its permissions."
        ) from None
    with f:
        while True:
            block = np.frombuffer(f.read(max(chunk_bytes, pending.size)), np.uint8)
            if block.size == 0:
                chunks = [pending] if pending.size else []
            else:
                buf = np.concatenate([pending, block]) if pending.size else block
                cut = _last_cut(buf)
                chunks, pending = [buf[:cut]] if cut else [], buf[cut:]
            for chunk in chunks:
                try:
                    codecs.utf_8_decode(chunk, "strict", True)  # the text itself is not kept
                except UnicodeDecodeError as err:
                    at = offset + err.start
                    f.seek(at)
                    reason = _decode_error(f.read(4)) or err.reason  # as in the whole file
                    f.seek(0)
                    raise not_utf8_error(file, reason, at, f.read(8192)) from None
                offset += chunk.size
                yield chunk
            if block.size == 0:
                return


def _decode_error(data: bytes) -> str | None:
    """Why ``data`` does not start with a UTF-8 character, or None if it does."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.reason if err.start == 0 else None
    return None


def _last_cut(buf: np.ndarray) -> int:
    """The last index > 0 where a character starts and no letter run crosses; 0 if none."""
    for start in (max(buf.size - 64, 0), 0):
        tail = buf[start:]
        ok = (tail < 0x80) | (tail >= 0xC0)  # not a continuation byte 10xxxxxx
        letter = _CLASSES[tail] == LETTER
        ok[1:] &= ~(letter[1:] & letter[:-1])
        ok[0] = False  # its left neighbour is not in tail (or it is buf[0])
        found = np.flatnonzero(ok)
        if found.size:
            return start + int(found[-1])
    return 0


def classify(chunk: np.ndarray) -> np.ndarray:
    """The class of every byte of a chunk of whole UTF-8 characters: OTHER, LETTER or BREAK.

    The first byte of a multi-byte line break is its BREAK; the others are OTHER.
    """
    classes = _CLASSES[chunk]
    maybe = np.flatnonzero(classes == MAYBE)
    if maybe.size:
        last = chunk.size - 1
        next1 = chunk[np.minimum(maybe + 1, last)]
        next2 = chunk[np.minimum(maybe + 2, last)]
        nel = (chunk[maybe] == 0xC2) & (next1 == 0x85) & (maybe + 1 <= last)
        separator = (next1 == 0x80) & ((next2 == 0xA8) | (next2 == 0xA9)) & (maybe + 2 <= last)
        classes[maybe] = np.where(nel | separator, BREAK, OTHER)
    return classes


# Where book_chars stands at a chunk's end: no letter since the last line break, a letter just
# before, or a letter followed by a gap of other bytes (the next letter of the line gets a space).
NO_LETTER, AFTER_LETTER, AFTER_GAP = 0, 1, 2


def book_chars(chunk: np.ndarray, classes: np.ndarray, state: int) -> tuple[np.ndarray, int]:
    """The book's characters of one chunk: its letters in lower case, and one space before each
    letter that follows a gap of non-letters inside a line (a gap with a line break gets none).

    This is ``''.join(preprocess(line) for line in text.splitlines())`` on bytes.

    Args:
        chunk: uint8 ``(C,)``, whole UTF-8 characters; ``classes`` its :func:`classify`.
        state: where the text before the chunk stands (``NO_LETTER`` at the start of the file).

    Returns:
        uint8 ASCII codes of ``' '`` and ``'a'``-``'z'``, and the state at the chunk's end.
    """
    events = np.flatnonzero(classes)  # letters and line breaks, (E,)
    if events.size == 0:
        return np.empty(0, np.uint8), AFTER_GAP if state == AFTER_LETTER else state
    is_letter = classes[events] == LETTER
    previous_letter = np.empty_like(is_letter)  # the event before each event is a letter
    previous_letter[0], previous_letter[1:] = state != NO_LETTER, is_letter[:-1]
    previous_at = np.empty_like(events)  # its position (-2: behind a gap before the chunk)
    previous_at[0], previous_at[1:] = (-2 if state == AFTER_GAP else -1), events[:-1]
    spaced = events[is_letter & previous_letter & (previous_at < events - 1)]
    keep = classes == LETTER
    chars = chunk | 0x20  # lower case for the letters
    gaps = spaced[spaced > 0] - 1  # the last byte of each gap becomes the space
    keep[gaps] = True
    chars[gaps] = SPACE
    out = chars[keep]
    if spaced.size and spaced[0] == 0:  # the gap is in the previous chunk
        out = np.concatenate([np.array([SPACE], np.uint8), out])
    last = int(events[-1])
    if not is_letter[-1]:
        state = NO_LETTER
    else:
        state = AFTER_LETTER if last == chunk.size - 1 else AFTER_GAP
    return out, state


def letter_runs(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every maximal run of letters (the book's words), (W,) each."""
    edges = np.flatnonzero(np.diff((classes == LETTER).view(np.int8), prepend=0, append=0))
    return edges[0::2], edges[1::2]
