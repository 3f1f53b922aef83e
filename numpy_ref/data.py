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
from numpy_ref.corpus import (
    CHUNK_BYTES,
    NO_LETTER,
    CorpusError,
    book_chars,
    classify,
    find_time_machine,
    letter_runs,
    no_letters_error,
    read_chunks,
)
from numpy_ref.vocab import Vocab, check_token_kind

Batch = tuple[np.ndarray, np.ndarray]
PACKED_LETTERS = 12  # letters of a word packed into one uint64 key: 5 bits each, a=1 ... z=26


def load_corpus_time_machine(
    max_tokens: int = -1, token: str = "char", path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, Vocab]:
    """The corpus as token indices and its vocabulary (built from the whole text).

    The same tokens and vocabulary as the book's ``tokenize(read_time_machine(path), token)`` and
    ``Vocab(tokens)``, computed on the file's bytes chunk by chunk: no Python object per token,
    and no decoded copy of the text (it is checked to be UTF-8 on the way).

    Args:
        max_tokens: keep only the first ``max_tokens`` tokens when > 0 (the book uses 10,000).
        token: "char" or "word".
        path: corpus file; see :func:`find_time_machine`.

    Returns:
        ``corpus`` ``(N,)`` in the smallest unsigned integer dtype that holds every index of the
        vocabulary (uint8 for the book's 28 characters), and the :class:`Vocab`.

    Raises:
        CorpusError: a file that cannot be used (see :func:`numpy_ref.corpus.check_corpus_file`),
            is not UTF-8 or holds no letters.
    """
    check_token_kind(token)
    file = find_time_machine(path)
    corpus, vocab = _load_chars(file) if token == "char" else _load_words(file)
    if 0 < max_tokens < corpus.size:
        corpus = corpus[:max_tokens].copy()  # let the rest go
    return corpus, vocab


def index_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds the indices ``0 .. vocab_size - 1``."""
    return np.min_scalar_type(max(vocab_size - 1, 0))


def _load_chars(file: os.PathLike[str]) -> tuple[np.ndarray, Vocab]:
    # The book's characters as ASCII codes, then as indices in place: at most one per byte.
    chars = np.empty(os.path.getsize(file), np.uint8)
    size = 0
    counts = np.zeros(256, np.int64)
    seen: list[int] = []  # the codes by first appearance
    state = NO_LETTER
    for chunk in read_chunks(file):
        piece, state = book_chars(chunk, classify(chunk), state)
        if size + piece.size > chars.size:  # the file grew while it was read
            chars = np.concatenate([chars[:size], np.empty(size + piece.size, np.uint8)])
        chars[size : size + piece.size] = piece
        size += piece.size
        piece_counts = np.bincount(piece, minlength=256)
        new = np.flatnonzero((piece_counts > 0) & (counts == 0))
        seen += sorted(new.tolist(), key=lambda code: int(np.argmax(piece == code)))
        counts += piece_counts
    if not seen:
        raise no_letters_error(file)
    vocab = Vocab.from_counts((chr(code), counts[code]) for code in seen)
    table = np.zeros(256, index_dtype(len(vocab)))  # uint8: at most 26 letters, space, <unk>
    table[seen] = vocab[[chr(code) for code in seen]]
    try:  # in place: the bytes never written were never resident
        chars.resize(size)
    except ValueError:  # another reference to the array (a debugger's): copy instead
        chars = chars[:size].copy()
    for start in range(0, size, CHUNK_BYTES):
        chars[start : start + CHUNK_BYTES] = table[chars[start : start + CHUNK_BYTES]]
    return chars, vocab


def _load_words(file: os.PathLike[str]) -> tuple[np.ndarray, Vocab]:
    """Word ids number the distinct words by first appearance; a word of up to PACKED_LETTERS
    letters is looked up by its packed key (exact, no hashing), a longer one by its bytes."""
    known = np.empty(0, np.uint64)  # sorted keys of the short words seen so far
    known_ids = np.empty(0, np.int64)  # and their ids
    long_ids: dict[bytes, int] = {}  # the long words seen so far and their ids
    words: list[str] = []  # by id
    counts = np.zeros(0, np.int64)  # by id
    pieces = []  # word ids, uint32 per chunk
    for chunk in read_chunks(file):
        starts, ends = letter_runs(classify(chunk))
        lengths = ends - starts
        short = np.flatnonzero(lengths <= PACKED_LETTERS)
        long = np.flatnonzero(lengths > PACKED_LETTERS)  # the rare path: a Python bytes each
        # The chunk's distinct short words; those already known get their ids.
        keys, inverse = np.unique(_pack(chunk, starts[short], lengths[short]), return_inverse=True)
        at = np.minimum(np.searchsorted(known, keys), max(known.size - 1, 0))
        found = known[at] == keys if known.size else np.zeros(keys.size, bool)
        key_ids = np.where(found, known_ids[at] if known.size else -1, -1)
        lower = (chunk | 0x20).tobytes() if long.size else b""  # the letters in lower case
        bounds = zip(starts[long].tolist(), ends[long].tolist(), strict=True)
        long_words = [lower[start:end] for start, end in bounds]
        # The words new in this chunk, as (position of the first, index of the key or the
        # long word), take the next ids in the order of their first position.
        fresh = np.flatnonzero(~found)
        fresh_at = np.flatnonzero(~found[inverse])  # ascending: the first of a key comes first
        _, first = np.unique(inverse[fresh_at], return_index=True)  # (fresh.size,)
        news = list(zip(short[fresh_at[first]].tolist(), fresh.tolist(), strict=True))
        new_long: dict[bytes, int] = {}
        for position, word in zip(long.tolist(), long_words, strict=True):
            if word not in long_ids:
                new_long.setdefault(word, position)
        news += [(position, word) for word, position in new_long.items()]
        for new_id, (_, new) in enumerate(sorted(news, key=lambda n: n[0]), start=len(words)):
            if isinstance(new, bytes):
                long_ids[new] = new_id
                words.append(new.decode("ascii"))
            else:
                key_ids[new] = new_id
                words.append(_unpack(keys[new]))
        where = np.searchsorted(known, keys[fresh])  # ascending, as keys are sorted
        known = np.insert(known, where, keys[fresh])
        known_ids = np.insert(known_ids, where, key_ids[fresh])
        ids = np.empty(starts.size, np.int64)  # (W,)
        ids[short] = key_ids[inverse]
        ids[long] = [long_ids[word] for word in long_words]
        counts = np.concatenate([counts, np.zeros(len(words) - counts.size, np.int64)])
        counts += np.bincount(ids, minlength=len(words))
        pieces.append(ids.astype(np.uint32))
    if not words:
        raise no_letters_error(file)
    vocab = Vocab.from_counts(zip(words, counts.tolist(), strict=True))
    return _gather(np.asarray(vocab[words], index_dtype(len(vocab))), pieces), vocab


def _pack(chunk: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One uint64 key per word of at most PACKED_LETTERS letters: letter j in bits 5j to 5j+4 as
    its place in the alphabet (a=1 ... z=26: the low five bits of 'a' and of 'A' are 1), zeros
    above the last letter; so distinct words get distinct keys."""
    keys = np.zeros(starts.size, np.uint64)
    for j in range(PACKED_LETTERS):
        has = np.flatnonzero(lengths > j)  # the words with a letter j
        codes = chunk[starts[has] + j] & 31
        keys[has] |= codes.astype(np.uint64) << np.uint64(5 * j)
    return keys


def _unpack(key: np.uint64) -> str:
    """The word of a :func:`_pack` key."""
    key, letters = int(key), []
    while key:
        letters.append(chr(ord("a") - 1 + (key & 31)))
        key >>= 5
    return "".join(letters)


def _gather(table: np.ndarray, pieces: list[np.ndarray]) -> np.ndarray:
    """``table[np.concatenate(pieces)]``, emptying ``pieces`` on the way (one copy in memory)."""
    out = np.empty(sum(piece.size for piece in pieces), table.dtype)
    start = 0
    pieces.reverse()
    while pieces:
        piece = pieces.pop()
        out[start : start + piece.size] = table[piece]
        start += piece.size
    return out


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
    """The book's training data: a loader over the first ``max_tokens`` tokens, and the vocab.

    Raises:
        CorpusError: the file itself holds fewer tokens than one batch needs (the message gives
            the file's count), or cannot be used at all (see :func:`load_corpus_time_machine`).
        ValueError: ``max_tokens`` keeps fewer tokens than one batch needs; bad sizes.
    """
    check_int("batch_size", batch_size)
    check_int("num_steps", num_steps)
    file = find_time_machine(path)
    corpus, vocab = load_corpus_time_machine(-1, token, file)
    need = min_corpus_length(batch_size, num_steps, use_random_iter)
    batch = f"one batch of batch_size={batch_size} x num_steps={num_steps}"
    if corpus.size < need:
        raise CorpusError(
            f"Corpus file {file} holds {corpus.size} {token} tokens, too few for {batch}: it "
            f"needs at least {need} (B*T, the largest random offset and one more for the "
            f"targets). Use a longer text or smaller sizes."
        )
    if 0 < max_tokens < need:
        raise ValueError(
            f"max_tokens={max_tokens} keeps too few of the {corpus.size} {token} tokens of "
            f"{file} for {batch}: it needs at least {need}. Raise max_tokens (-1 keeps them all) "
            f"or use smaller sizes."
        )
    if 0 < max_tokens < corpus.size:
        corpus = corpus[:max_tokens].copy()
    return SeqDataLoader(corpus, batch_size, num_steps, use_random_iter, seed), vocab
