"""The data pipeline shared by every implementation: corpus, tokens, vocabulary, minibatches.

Letters: N corpus length (tokens), B batch size, T steps per subsequence.

The book's preprocessing (d2l 8.2): every run of non-letters becomes one space, lines are
stripped and lower-cased; char tokens concatenate the lines without a separator. The two minibatch
schemes (d2l 8.3) are written with array indexing instead of Python loops over tokens, and draw
all their randomness from a ``numpy.random.Generator``, so one seed fixes every batch of a run:

- random sampling: drop a random offset ``o`` in ``[0, T-1]``, cut the rest into
  ``(N - o - 1) // T`` subsequences of length T, shuffle them, and serve ``B`` per batch;
  neighbouring batches are not adjacent in the text.
- sequential partitioning: drop a random offset ``o`` in ``[0, T]``, split the rest into ``B``
  long rows, and serve consecutive ``T``-wide column blocks; row ``b`` of one batch continues where
  row ``b`` of the previous batch ended, so the state can be carried.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpy_ref.atomic import atomic_write

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
DATA_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
FILE_NAME = "timemachine.txt"
DATA_DIR_ENV = "RNN_LM_DATA_DIR"
TOKEN_KINDS = ("char", "word")

Batch = tuple[np.ndarray, np.ndarray]


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


def _check_token_kind(token: str) -> None:
    if token not in TOKEN_KINDS:
        raise ValueError(f"token must be one of {TOKEN_KINDS}, got {token!r}")


def tokenize(lines: Sequence[str], token: str = "char") -> list[list[str]]:
    """Split each line into characters or whitespace-separated words."""
    _check_token_kind(token)
    if token == "word":
        return [line.split() for line in lines]
    return [list(line) for line in lines]


def _flatten(tokens: Iterable[Any]) -> list[str]:
    return [t for line in tokens for t in line] if _is_nested(tokens) else list(tokens)


def _is_nested(tokens: Any) -> bool:
    return isinstance(tokens, (list, tuple)) and len(tokens) > 0 and isinstance(tokens[0], list)


class Vocab:
    """Token ↔ index table.

    Index 0 is ``<unk>``, then the reserved tokens in the given order, then every token of frequency
    at least ``min_freq`` by descending frequency; ties keep the order of first appearance in
    ``tokens`` (a stable sort of first-seen order, the same order the book's ``Counter`` gives).
    Unknown tokens map to 0.

    Args:
        tokens: a flat list of tokens or a list of token lines.
        min_freq: tokens seen fewer times are left out (and map to ``<unk>``).
        reserved_tokens: tokens placed right after ``<unk>`` whatever their count.
    """

    UNK = "<unk>"

    def __init__(
        self,
        tokens: Iterable[Any] = (),
        min_freq: int = 0,
        reserved_tokens: Sequence[str] = (),
    ) -> None:
        if self.UNK in reserved_tokens or len(set(reserved_tokens)) != len(reserved_tokens):
            raise ValueError(
                f"reserved_tokens must be distinct and must not contain {self.UNK!r} "
                f"(it is always index 0), got {list(reserved_tokens)!r}"
            )
        counter = collections.Counter(_flatten(tokens))
        self._token_freqs = sorted(counter.items(), key=lambda item: item[1], reverse=True)
        self.idx_to_token = [self.UNK, *reserved_tokens]
        self.idx_to_token += [
            t for t, freq in self._token_freqs if freq >= min_freq and t not in self.idx_to_token
        ]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens: Any) -> Any:
        """Index of a token, or a list of indices for a list or tuple of tokens."""
        if isinstance(tokens, (list, tuple)):
            return [self[t] for t in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def to_tokens(self, indices: Any) -> Any:
        """Token of an index, or a list of tokens for a sequence or array of indices."""
        if isinstance(indices, (list, tuple, np.ndarray)):
            return [self.idx_to_token[int(i)] for i in np.ravel(indices)]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        return 0

    @property
    def token_freqs(self) -> list[tuple[str, int]]:
        """(token, count) pairs of the text, most frequent first."""
        return list(self._token_freqs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description from which :meth:`from_dict` rebuilds the same vocabulary."""
        return {
            "idx_to_token": list(self.idx_to_token),
            "token_freqs": [[t, int(n)] for t, n in self._token_freqs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        vocab = cls()
        vocab.idx_to_token = list(d["idx_to_token"])
        if not vocab.idx_to_token or vocab.idx_to_token[0] != cls.UNK:
            raise ValueError(
                f"A vocabulary must start with {cls.UNK!r}, got {d['idx_to_token'][:3]}"
            )
        vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
        vocab._token_freqs = [(t, int(n)) for t, n in d.get("token_freqs", [])]
        return vocab

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.idx_to_token == other.idx_to_token

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.idx_to_token[:6])
        return f"Vocab(size={len(self)}, [{head}{', ...' if len(self) > 6 else ''}])"


def load_corpus_time_machine(
    max_tokens: int = -1, token: str = "char", path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, Vocab]:
    """The corpus as token indices and its vocabulary (built from the whole text).

    Args:
        max_tokens: keep only the first ``max_tokens`` tokens when > 0 (the book uses 10,000).
        token: "char" or "word".
        path: corpus file; see :func:`find_time_machine`.

    Returns:
        ``corpus`` int64 ``(N,)`` and the :class:`Vocab`.
    """
    _check_token_kind(token)
    tokens = tokenize(read_time_machine(path), token)
    vocab = Vocab(tokens)
    corpus = np.asarray(vocab[_flatten(tokens)], dtype=np.int64)
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    return corpus, vocab


def split_corpus(corpus: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split off the last ``val_fraction`` of the corpus as a held-out part.

    Returns:
        ``(train, val)``: the first ``N - n_val`` and the last ``n_val = round(N * val_fraction)``
        tokens.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    n_val = int(round(len(corpus) * val_fraction))
    if n_val < 1 or n_val >= len(corpus):
        raise ValueError(
            f"val_fraction={val_fraction} of a corpus of {len(corpus)} tokens leaves an empty part"
        )
    return corpus[: len(corpus) - n_val], corpus[len(corpus) - n_val :]


def _check_sizes(
    corpus: np.ndarray, batch_size: int, num_steps: int, use_random_iter: bool
) -> np.ndarray:
    for name, value in (("batch_size", batch_size), ("num_steps", num_steps)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer):
        raise ValueError(
            f"corpus must be a 1-D array of token indices, got shape {corpus.shape} "
            f"and dtype {corpus.dtype}"
        )
    min_len = min_corpus_length(batch_size, num_steps, use_random_iter)
    if len(corpus) < min_len:
        raise ValueError(
            f"A corpus of {len(corpus)} tokens is too short for one batch of batch_size="
            f"{batch_size} x num_steps={num_steps} after the random offset: it needs at least "
            f"{min_len} tokens. Use a longer corpus or smaller sizes."
        )
    return corpus


def min_corpus_length(batch_size: int, num_steps: int, use_random_iter: bool) -> int:
    """The shortest corpus that yields at least one batch for every possible random offset.

    Both schemes need ``N - o - 1 >= B*T``; the largest offset ``o`` is ``T - 1`` for random
    sampling and ``T`` for sequential partitioning.
    """
    largest_offset = num_steps - 1 if use_random_iter else num_steps
    return batch_size * num_steps + largest_offset + 1


def seq_data_iter_random(
    corpus: np.ndarray, batch_size: int, num_steps: int, rng: np.random.Generator
) -> Iterator[Batch]:
    """Random sampling (d2l 8.3.4.1): shuffled, non-overlapping subsequences.

    With ``o`` the random offset, the corpus after ``o`` holds ``S = (N - o - 1) // T``
    subsequences and yields ``S // B`` batches; no subsequence appears twice in one pass.

    Yields:
        ``X``, ``Y`` int arrays ``(B, T)``; ``Y`` is ``X`` one token later in the corpus.
    """
    corpus = _check_sizes(corpus, batch_size, num_steps, use_random_iter=True)
    offset = int(rng.integers(0, num_steps))  # o in [0, T-1]
    num_subseqs = (len(corpus) - offset - 1) // num_steps
    num_batches = num_subseqs // batch_size
    starts = offset + num_steps * rng.permutation(num_subseqs)[: num_batches * batch_size]
    windows = starts.reshape(num_batches, batch_size, 1) + np.arange(num_steps)  # (batches, B, T)
    for index in windows:
        yield corpus[index], corpus[index + 1]


def seq_data_iter_sequential(
    corpus: np.ndarray, batch_size: int, num_steps: int, rng: np.random.Generator
) -> Iterator[Batch]:
    """Sequential partitioning (d2l 8.3.4.2): adjacent batches continue each other row by row.

    With ``o`` the random offset, ``n = ((N - o - 1) // B) * B`` tokens are laid out as ``B`` rows
    of ``n // B`` and served in ``(n // B) // T`` blocks of ``T`` columns.

    Yields:
        ``X``, ``Y`` int arrays ``(B, T)``; ``Y`` is ``X`` one token later in the corpus.
    """
    corpus = _check_sizes(corpus, batch_size, num_steps, use_random_iter=False)
    offset = int(rng.integers(0, num_steps + 1))  # o in [0, T]
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset : offset + num_tokens].reshape(batch_size, -1)  # (B, n // B)
    Ys = corpus[offset + 1 : offset + 1 + num_tokens].reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    for start in range(0, num_batches * num_steps, num_steps):
        yield Xs[:, start : start + num_steps], Ys[:, start : start + num_steps]


class SeqDataLoader:
    """A re-iterable loader: every pass draws a new offset (and order) from its own generator.

    Args:
        corpus: int ``(N,)`` token indices.
        batch_size: B.
        num_steps: T.
        use_random_iter: random sampling if True, else sequential partitioning.
        seed: seed of the loader's ``numpy.random.Generator``; it fixes every pass of a run.
    """

    def __init__(
        self,
        corpus: np.ndarray,
        batch_size: int,
        num_steps: int,
        use_random_iter: bool = False,
        seed: int = 0,
    ) -> None:
        self.corpus = _check_sizes(corpus, batch_size, num_steps, use_random_iter)
        self.batch_size = int(batch_size)
        self.num_steps = int(num_steps)
        self.use_random_iter = bool(use_random_iter)
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[Batch]:
        scheme = seq_data_iter_random if self.use_random_iter else seq_data_iter_sequential
        return scheme(self.corpus, self.batch_size, self.num_steps, self.rng)


def load_data_time_machine(
    batch_size: int,
    num_steps: int,
    use_random_iter: bool = False,
    max_tokens: int = 10000,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    token: str = "char",
) -> tuple[SeqDataLoader, Vocab]:
    """The book's training data: a loader over the first ``max_tokens`` tokens, and the vocab."""
    corpus, vocab = load_corpus_time_machine(max_tokens, token, path)
    return SeqDataLoader(corpus, batch_size, num_steps, use_random_iter, seed), vocab
