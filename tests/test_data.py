"""The shared data pipeline: corpus facts, Vocab, and the two batch schemes (the corpus loader's
reading, lookup order and errors: tests/test_corpus.py)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.benchmarks import bench_corpus
from numpy_ref.corpus import read_time_machine
from numpy_ref.data import (
    SeqDataLoader,
    load_corpus_time_machine,
    load_data_time_machine,
    min_corpus_length,
    seq_data_iter_random,
    seq_data_iter_sequential,
    split_corpus,
)
from numpy_ref.vocab import Vocab, tokenize

SCHEMES = {"random": seq_data_iter_random, "sequential": seq_data_iter_sequential}
PROPERTY = settings(max_examples=300, deadline=None)


# --- the real corpus -------------------------------------------------------------------------


def test_char_corpus_has_the_books_size_and_vocabulary(corpus_env: Path) -> None:
    corpus, vocab = load_corpus_time_machine()
    assert corpus.dtype == np.uint8 and corpus.shape == (170_580,)
    assert len(vocab) == 28
    assert vocab.idx_to_token[:5] == ["<unk>", " ", "e", "t", "a"]
    assert vocab.to_tokens(corpus[:13].tolist()) == list("the time mach")


def test_word_corpus_has_the_books_size_and_vocabulary(corpus_env: Path) -> None:
    corpus, vocab = load_corpus_time_machine(token="word")
    assert corpus.dtype == np.uint16 and corpus.shape == (32_775,)
    assert len(vocab) == 4_580
    assert vocab.idx_to_token[:5] == ["<unk>", "the", "i", "and", "of"]


def test_max_tokens_keeps_the_prefix(corpus_env: Path) -> None:
    full, _ = load_corpus_time_machine()
    short, vocab = load_corpus_time_machine(max_tokens=10_000)
    np.testing.assert_array_equal(short, full[:10_000])
    assert len(vocab) == 28  # the vocabulary is built from the whole text


def test_lines_are_preprocessed_like_the_book(corpus_env: Path) -> None:
    lines = read_time_machine()
    assert len(lines) == 3_221
    assert lines[0] == "the time machine by h g wells"
    assert all(line == line.strip().lower() for line in lines)
    assert all(set(line) <= set("abcdefghijklmnopqrstuvwxyz ") for line in lines)
    assert not any("  " in line for line in lines)


def test_book_batches_per_epoch(corpus_env: Path) -> None:
    loader, _ = load_data_time_machine(32, 35)
    first = [X.copy() for X, _ in loader]
    assert 7 <= len(first) <= 8  # (10000 - o - 1) // 32 // 35 for o in [0, 35]
    assert all(X.shape == (32, 35) for X in first)


# --- tokens and vocabulary ---------------------------------------------------------------------


def test_tokenize_chars_and_words() -> None:
    assert tokenize(["ab c"], "char") == [["a", "b", " ", "c"]]
    assert tokenize(["ab  c", ""], "word") == [["ab", "c"], []]


@pytest.mark.parametrize(
    "call", [lambda: tokenize(["a"], "byte"), lambda: load_corpus_time_machine(token="bpe")]
)
def test_unknown_token_kind_lists_the_allowed_ones(call) -> None:
    with pytest.raises(ValueError, match=r"one of \('char', 'word'\)"):
        call()


def test_vocab_orders_by_frequency_then_first_appearance() -> None:
    vocab = Vocab([["b", "a", "c"], ["a", "d", "c", "b", "a"]])
    # a:3, then b and c (2 each, b seen first), then d
    assert vocab.idx_to_token == ["<unk>", "a", "b", "c", "d"]
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 2), ("d", 1)]


def test_vocab_lookup_unknowns_min_freq_and_reserved() -> None:
    vocab = Vocab(list("aaabbc"), min_freq=2, reserved_tokens=["<pad>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "a", "b"]
    assert vocab["a"] == 2 and vocab["c"] == 0 and vocab["zzz"] == 0
    assert vocab[["b", "c", ("a",)]] == [3, 0, [2]]
    assert vocab.to_tokens([2, 3, 0]) == ["a", "b", "<unk>"]
    assert vocab.to_tokens(np.array([1])) == ["<pad>"] and vocab.to_tokens(3) == "b"
    assert Vocab.from_dict(vocab.to_dict()) == vocab
    assert Vocab.from_dict(vocab.to_dict()).token_freqs == vocab.token_freqs


@PROPERTY
@given(
    st.lists(st.sampled_from("abcdefg"), max_size=40),
    st.integers(0, 4),
    st.lists(st.sampled_from(["<pad>", "<bos>", "a", "b"]), unique=True, max_size=3),
)
def test_vocab_from_counts_is_the_vocab_of_the_tokens(tokens, min_freq, reserved_tokens) -> None:
    counts = collections.Counter(tokens).items()  # first-seen order
    from_counts = Vocab.from_counts(counts, min_freq, reserved_tokens)
    from_tokens = Vocab(tokens, min_freq, reserved_tokens)
    assert from_counts.idx_to_token == from_tokens.idx_to_token
    assert from_counts.token_freqs == from_tokens.token_freqs
    assert from_counts.token_to_idx == from_tokens.token_to_idx


def test_vocab_refuses_unk_among_reserved_tokens() -> None:
    with pytest.raises(ValueError, match="reserved_tokens"):
        Vocab(["a"], reserved_tokens=["<unk>"])


def test_split_corpus_holds_out_the_end() -> None:
    train, val = split_corpus(np.arange(100), 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        split_corpus(np.arange(100), 1.0)


# --- the two batch schemes: properties ----------------------------------------------------------


@st.composite
def batch_setups(draw):
    batch_size = draw(st.integers(1, 6))
    num_steps = draw(st.integers(1, 8))
    shortest = min_corpus_length(batch_size, num_steps, use_random_iter=False)
    length = draw(st.integers(shortest, shortest + 300))
    seed = draw(st.integers(0, 2**32 - 1))
    return length, batch_size, num_steps, seed


def _positions(scheme: str, length: int, batch_size: int, num_steps: int, seed: int):
    """Run a scheme on the corpus 0, 1, ..., N-1, where each token is its own position."""
    rng = np.random.default_rng(seed)
    return list(SCHEMES[scheme](np.arange(length), batch_size, num_steps, rng))


@PROPERTY
@given(batch_setups(), st.sampled_from(sorted(SCHEMES)))
def test_rows_are_contiguous_slices_and_y_is_x_shifted(setup, scheme) -> None:
    length, B, T, seed = setup
    batches = _positions(scheme, length, B, T, seed)
    assert batches, "at least one batch for a corpus of the minimum length"
    for X, Y in batches:
        assert X.shape == Y.shape == (B, T)
        np.testing.assert_array_equal(X, X[:, :1] + np.arange(T))  # a contiguous slice per row
        np.testing.assert_array_equal(Y, X + 1)  # Y is X one token later
        assert X.min() >= 0 and Y.max() < length
    # On any other corpus the same generator state picks the same positions.
    values = np.random.default_rng(seed + 1).integers(0, 50, length)
    rng = np.random.default_rng(seed)
    for (X, Y), (Xv, Yv) in zip(batches, SCHEMES[scheme](values, B, T, rng), strict=True):
        np.testing.assert_array_equal(Xv, values[X])
        np.testing.assert_array_equal(Yv, values[Y])


@PROPERTY
@given(batch_setups())
def test_random_sampling_never_repeats_a_subsequence_and_counts_like_the_book(setup) -> None:
    length, B, T, seed = setup
    batches = _positions("random", length, B, T, seed)
    starts = np.concatenate([X[:, 0] for X, _ in batches])
    offset = int(starts[0] % T)
    assert 0 <= offset <= T - 1
    assert len(set(starts.tolist())) == len(starts)
    assert np.all(starts % T == offset)  # aligned to one grid: no two subsequences overlap
    assert len(batches) == ((length - offset - 1) // T) // B


@PROPERTY
@given(batch_setups())
def test_sequential_batches_continue_each_row_and_count_like_the_book(setup) -> None:
    length, B, T, seed = setup
    batches = _positions("sequential", length, B, T, seed)
    offset = int(batches[0][0][0, 0])
    assert 0 <= offset <= T
    row_length = (length - offset - 1) // B
    np.testing.assert_array_equal(batches[0][0][:, 0], offset + row_length * np.arange(B))
    for (X_prev, _), (X_next, _) in zip(batches[:-1], batches[1:], strict=True):
        np.testing.assert_array_equal(X_next[:, 0], X_prev[:, -1] + 1)
    num_tokens = ((length - offset - 1) // B) * B
    assert len(batches) == (num_tokens // B) // T


@PROPERTY
@given(batch_setups(), st.booleans())
def test_loader_is_fixed_by_its_seed_and_redraws_every_pass(setup, use_random_iter) -> None:
    length, B, T, seed = setup
    corpus = np.arange(length)
    first = SeqDataLoader(corpus, B, T, use_random_iter, seed)
    again = SeqDataLoader(corpus, B, T, use_random_iter, seed)
    for _ in range(3):  # pass after pass, two loaders with one seed agree
        a, b = [X for X, _ in first], [X for X, _ in again]
        assert len(a) == len(b) >= 1
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_loader_draws_a_new_offset_each_pass() -> None:
    loader = SeqDataLoader(np.arange(2_000), 4, 10, use_random_iter=False, seed=3)
    offsets = {int(next(iter(loader))[0][0, 0]) for _ in range(30)}
    assert len(offsets) > 1


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_a_minimum_length_corpus_gives_a_batch_for_every_offset(use_random_iter) -> None:
    B, T = 3, 4
    corpus = np.arange(min_corpus_length(B, T, use_random_iter))
    for seed in range(60):  # 60 draws cover all T or T+1 offsets with near certainty
        assert len(list(SeqDataLoader(corpus, B, T, use_random_iter, seed))) >= 1
    with pytest.raises(ValueError, match=r"too short .* batch_size=3 x num_steps=4"):
        SeqDataLoader(corpus[:-1], B, T, use_random_iter)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"num_steps": -2}, "num_steps must be an integer >= 1, got -2"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
    ],
)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_bad_sizes_name_the_value(kwargs, message, scheme) -> None:
    args = {"batch_size": 2, "num_steps": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        list(SCHEMES[scheme](np.arange(100), rng=np.random.default_rng(0), **args))
    with pytest.raises(ValueError, match=message):
        SeqDataLoader(np.arange(100), use_random_iter=scheme == "random", **args)


def test_a_corpus_of_text_instead_of_indices_is_refused() -> None:
    with pytest.raises(ValueError, match="1-D array of token indices"):
        SeqDataLoader(np.array(list("abcdefghijklmnopqrstuvwxyz")), 2, 3)


# --- the loading benchmark (experiments/benchmarks/bench_corpus.py) ------------------------------


def test_bench_corpus_measures_both_token_kinds_in_fresh_processes(tmp_path: Path) -> None:
    result = bench_corpus.bench_corpus(mb=1, text="random", folder=tmp_path)
    assert result["bytes"] == 10**6 and result["text"] == "random"
    for token in ("char", "word"):
        figures = result[token]
        assert figures["seconds"] > 0 and figures["tokens"] > 0
        assert figures["peak_rss_mb"] >= figures["load_rss_mb"] >= 0
    assert result["char"]["dtype"] == "uint8" and result["char"]["vocab_size"] == 28
    assert list(tmp_path.iterdir()) == []  # the text is written to a temporary folder


def test_bench_texts_have_the_size_asked_for(tmp_path: Path, corpus_env: Path) -> None:
    book = bench_corpus.write_text(tmp_path / "book.txt", 0.4, "book")
    text = corpus_env.read_bytes()
    assert book.read_bytes() == (text * 3)[:400_000]
    generated = bench_corpus.write_text(tmp_path / "random.txt", 0.01, "random", seed=1)
    assert generated.stat().st_size == 10_000
    assert generated.read_bytes() == bench_corpus.random_text(10_000, seed=1)
