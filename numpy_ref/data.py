"""The corpus as token indices and the minibatches of training (d2l 8.2-8.3).

Letters: N corpus length (tokens), B batch size, T steps per subsequence.

The two minibatch schemes (d2l 8.3) are written with array indexing instead of Python loops over
tokens, and draw all their randomness from a ``numpy.random.Generator``, so one seed fixes every
batch of a run:

- random sampling: drop a random offset ``o`` in ``[0, T-1]``, cut the rest into
  ``(N - o - 1) // T`` subsequences of length T, shuffle them, and serve ``B`` per batch;
  neighbouring batches are not adjacent in the text.
- sequential partitioning: drop a random offset ``o`` in ``[0, T]``, split the rest into ``B``
  long rows, and serve consecutive ``T``-wide column blocks; row ``b`` of one batch continues where
  row ``b`` of the previous batch ended, so the state can be carried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from numpy_ref.checks import check_int
from numpy_ref.corpus import read_time_machine
from numpy_ref.vocab import Vocab, check_token_kind, flatten_tokens, tokenize

Batch = tuple[np.ndarray, np.ndarray]


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
    check_token_kind(token)
    tokens = tokenize(read_time_machine(path), token)
    vocab = Vocab(tokens)
    corpus = np.asarray(vocab[flatten_tokens(tokens)], dtype=np.int64)
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
    check_int("batch_size", batch_size)
    check_int("num_steps", num_steps)
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
