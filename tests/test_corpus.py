"""The corpus loader: the vectorised reading against the book's code on any text, the lookup order
(path, environment, cache, download) and one clear error for every bad corpus."""

from __future__ import annotations

import collections
import hashlib
import re
import string
import sys
import urllib.error
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref import corpus as data
from numpy_ref.corpus import CorpusError, CorpusUnavailableError, read_time_machine
from numpy_ref.data import (
    load_corpus_time_machine,
    load_data_time_machine,
)

# --- the vectorised loader against the book's code ----------------------------------------------


def book_corpus(path: Path, token: str) -> tuple[list[int], list[str], list[tuple[str, int]]]:
    """The loader as it was (d2l 8.2): one Python str per token, Counter, a stable sort.

    Returns the corpus as indices, ``idx_to_token`` and ``token_freqs``.
    """
    text = path.read_text(encoding="utf-8")
    lines = [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]
    tokens = [line.split() for line in lines] if token == "word" else [list(x) for x in lines]
    flat = [t for line in tokens for t in line]
    token_freqs = sorted(collections.Counter(flat).items(), key=lambda x: x[1], reverse=True)
    idx_to_token = ["<unk>"] + [t for t, _ in token_freqs]
    token_to_idx = {t: i for i, t in enumerate(idx_to_token)}
    return [token_to_idx[t] for t in flat], idx_to_token, token_freqs


def assert_loads_like_the_book(path: Path, token: str) -> None:
    expected, idx_to_token, token_freqs = book_corpus(path, token)
    if not expected:  # a text without letters
        with pytest.raises(CorpusError, match="holds no letters"):
            load_corpus_time_machine(token=token, path=path)
        return
    corpus, vocab = load_corpus_time_machine(token=token, path=path)
    np.testing.assert_array_equal(corpus, expected)
    assert vocab.idx_to_token == idx_to_token
    assert vocab.token_freqs == token_freqs
    assert corpus.dtype == np.min_scalar_type(len(vocab) - 1)  # uint8 up to 256 tokens


@pytest.mark.parametrize("token", ["char", "word"])
def test_loader_gives_the_books_tokens_and_vocabulary(corpus_file: Path, token: str) -> None:
    assert_loads_like_the_book(corpus_file, token)


# Texts as words and the gaps between them, where the bytes are tricky: every line break of
# str.splitlines (\x85, \u2028 and \u2029 are two and three bytes in UTF-8), characters whose bytes
# look like parts of them (C2 A0, C3 85, E2 80 A6, E2 80 A7), NUL, punctuation, arbitrary Unicode;
# words of any length (past the 12 letters of a packed key), and empty words, so gaps meet.
LINE_BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
LOOKALIKES = ["\xa0", "\xc5", "\u2026", "\u2027", "\u202a", "\x80", "\xc2", "\xe2", "\ufeff"]
SEPARATORS = [*LINE_BREAKS, *LOOKALIKES, "\x00", " ", "  ", ", ", "-", "'", "1"]
WORDS = st.one_of(
    st.text(string.ascii_letters, max_size=12),
    st.text(string.ascii_letters, min_size=13, max_size=200),
)
GAPS = st.lists(
    st.one_of(st.sampled_from(SEPARATORS), st.text(st.characters(codec="utf-8"), max_size=4)),
    max_size=3,
).map("".join)
TEXTS = st.tuples(GAPS, st.lists(st.tuples(WORDS, GAPS), max_size=12)).map(
    lambda t: t[0] + "".join(word + gap for word, gap in t[1])
)
CHUNK_SIZES = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])  # bytes read at a time


@settings(max_examples=300, deadline=None)
@given(TEXTS, CHUNK_SIZES, st.sampled_from(["char", "word"]))
def test_loader_matches_the_books_code_on_any_text(tmp_path_factory, text, chunk_bytes, token):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(text.encode("utf-8"))
    if not text:
        with pytest.raises(CorpusError, match="is empty"):
            load_corpus_time_machine(token=token, path=path)
        return
    with mock.patch.object(data, "CHUNK_BYTES", chunk_bytes):
        assert_loads_like_the_book(path, token)


@pytest.mark.parametrize(
    ("text", "chars"),
    [
        ("Ab, cd\n ef", "ab cdef"),  # a gap inside a line is a space; a line break is nothing
        ("ab\r\ncd\x1cef", "abcdef"),
        ("ab\x85cd\u2028ef\u2029gh", "abcdefgh"),  # the multi-byte line breaks
        ("ab\xc5cd\u2026ef\u2027gh\xa0ij", "ab cd ef gh ij"),  # their lookalikes
        ("ab\x00cd\tef", "ab cd ef"),
        (" \n1 Ab\n ", "ab"),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 20])
def test_line_breaks_join_letters_and_other_gaps_become_one_space(
    tmp_path: Path, text: str, chars: str, chunk_bytes: int
) -> None:
    path = _write(tmp_path / "text.txt", text)
    with mock.patch.object(data, "CHUNK_BYTES", chunk_bytes):
        corpus, vocab = load_corpus_time_machine(path=path)
        words, word_vocab = load_corpus_time_machine(token="word", path=path)
    assert "".join(vocab.to_tokens(corpus)) == chars
    assert word_vocab.to_tokens(words) == re.findall("[a-z]+", text.lower())


def test_word_indices_take_the_smallest_dtype_that_holds_the_vocabulary(tmp_path: Path) -> None:
    words = [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]  # 676
    path = _write(tmp_path / "words.txt", " ".join(words[:255]) + "\n")  # <unk> + 255 words
    assert load_corpus_time_machine(token="word", path=path)[0].dtype == np.uint8
    path = _write(tmp_path / "words.txt", " ".join(words[:256]) + "\n")  # <unk> + 256 words
    assert load_corpus_time_machine(token="word", path=path)[0].dtype == np.uint16


def test_max_tokens_returns_a_copy_not_a_view_of_the_whole_text(corpus_env: Path) -> None:
    short, _ = load_corpus_time_machine(max_tokens=100, token="word")
    assert short.shape == (100,) and short.base is None


# --- loading order and failure paths -----------------------------------------------------------


@pytest.fixture
def no_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache, no environment variable, and a network that must not be touched."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url: str, timeout: float = 30.0) -> bytes:
        raise AssertionError("the network was used although a local file exists")

    monkeypatch.setattr(data, "_fetch", no_network)
    return tmp_path


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_explicit_path_wins_and_may_be_any_text(
    no_corpus: Path, corpus_file: Path, monkeypatch
) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(corpus_file.parent))
    other = _write(no_corpus / "other.txt", "Abc, DEF!\n\n  x1y\n")
    assert read_time_machine(other) == ["abc def", "", "x y"]


def test_environment_variable_comes_before_the_cache(
    no_corpus: Path, corpus_file: Path, monkeypatch
) -> None:
    _write(data.cache_dir() / data.FILE_NAME, "not the book")  # would fail its checksum if read
    monkeypatch.setenv(data.DATA_DIR_ENV, str(corpus_file.parent))
    assert data.find_time_machine() == corpus_file.parent / data.FILE_NAME


def test_cache_comes_before_the_download(no_corpus: Path, corpus_file: Path) -> None:
    cached = data.cache_dir() / data.FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(corpus_file.read_bytes())
    assert data.find_time_machine() == cached


def test_download_lands_in_the_cache_after_its_check(
    no_corpus: Path, corpus_file: Path, monkeypatch
) -> None:
    urls = []

    def fetch(url: str, timeout: float = 30.0) -> bytes:
        urls.append(url)
        return corpus_file.read_bytes()

    monkeypatch.setattr(data, "_fetch", fetch)
    found = data.find_time_machine()
    assert urls == [data.DATA_URL]
    assert found == data.cache_dir() / data.FILE_NAME
    assert hashlib.sha1(found.read_bytes()).hexdigest() == data.DATA_SHA1
    assert sorted(p.name for p in found.parent.iterdir()) == [data.FILE_NAME]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (urllib.error.URLError("no route to host"), "Could not download"),
        (TimeoutError("timed out"), "Could not download"),
        (b"", "was empty"),
        (b"The Time Machine, truncated", "has sha1"),
    ],
    ids=["network-error", "timeout", "empty", "checksum-mismatch"],
)
def test_failed_download_says_how_to_fix_it_and_leaves_nothing(
    no_corpus: Path, monkeypatch, payload, message
) -> None:
    def fetch(url: str, timeout: float = 30.0) -> bytes:
        if isinstance(payload, BaseException):
            raise payload
        return payload

    monkeypatch.setattr(data, "_fetch", fetch)
    with pytest.raises(CorpusUnavailableError, match=message) as info:
        load_corpus_time_machine()
    assert data.DATA_URL in str(info.value)
    assert data.DATA_DIR_ENV in str(info.value) and "path=" in str(info.value)
    cache = data.cache_dir()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_damaged_file_in_data_dir_is_refused(no_corpus: Path, monkeypatch) -> None:
    folder = no_corpus / "data"
    _write(folder / data.FILE_NAME, "half a book")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    with pytest.raises(CorpusUnavailableError, match="sha1"):
        read_time_machine()


def _executable(folder: Path) -> Path:
    copy = folder / "program"
    copy.write_bytes(Path(sys.executable).resolve().read_bytes())  # an ELF or Mach-O binary
    return copy


# (make the file in a folder, the words its message must hold); every message names the file.
BAD_FILES = {
    "directory": (lambda d: d, ["is a directory", "timemachine.txt", "--data"]),
    "missing": (lambda d: d / "nowhere.txt", ["does not exist", "path=", "--data FILE"]),
    "empty": (lambda d: _write(d / "empty.txt", ""), ["is empty", "0 bytes", "--data FILE"]),
    "nul-bytes": (
        lambda d: _write(d / "zeros.bin", "\x00" * 5000),
        ["holds no letters", "NUL bytes", "--data FILE"],
    ),
    "no-letters": (
        lambda d: _write(d / "digits.txt", "1984, 2001: 42!\n\u00e9\u00e8\n"),
        ["holds no letters", "cannot be trained on", "path="],
    ),
    "executable": (_executable, ["is not text", "binary", "--data FILE"]),
    "latin-1": (
        lambda d: _write(d / "latin1.txt", "Caf\u00e9\n", "latin-1"),
        ["is not UTF-8", "invalid continuation byte at byte 3", "iconv", "--data FILE"],
    ),
    "utf-16": (
        lambda d: _write(d / "notepad.txt", "The Time Machine\n", "utf-16"),
        ["is UTF-16 text, not UTF-8", "iconv -f UTF-16", "--data FILE"],
    ),
}
LOADERS = {
    "chars": lambda path: load_corpus_time_machine(token="char", path=path),
    "words": lambda path: load_corpus_time_machine(token="word", path=path),
    "lines": read_time_machine,
    "loader": lambda path: load_data_time_machine(2, 3, path=path),
}


@pytest.mark.parametrize("loader", list(LOADERS.values()), ids=list(LOADERS))
@pytest.mark.parametrize("case", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_every_bad_corpus_file_gets_one_clear_error(no_corpus: Path, case, loader) -> None:
    make, words = case
    path = make(no_corpus)
    with pytest.raises(CorpusError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_a_bad_byte_is_found_at_its_offset_in_the_file(no_corpus: Path) -> None:
    path = no_corpus / "late.txt"
    path.write_bytes(b"the time machine\n" * 1000 + b"caf\xe9\n")
    with mock.patch.object(data, "CHUNK_BYTES", 100), pytest.raises(CorpusError) as info:
        load_corpus_time_machine(path=path)
    assert f"at byte {17 * 1000 + 3}" in str(info.value)


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        (lambda d: d.mkdir() or d, "points to a folder without timemachine.txt"),
        (lambda d: _write(d / "timemachine.txt", "x"), "names a file; it must be the folder"),
        (lambda d: d / "nowhere", "does not exist; it must be the folder"),
    ],
    ids=["folder-without-the-file", "a-file", "missing"],
)
def test_data_dir_without_the_book_is_an_error_not_skipped(
    no_corpus: Path, corpus_file: Path, monkeypatch, folder, message
) -> None:
    cached = _write(data.cache_dir() / data.FILE_NAME, corpus_file.read_text())  # not used
    env_dir = folder(no_corpus / "empty-data")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env_dir))
    with pytest.raises(CorpusUnavailableError, match=message) as info:
        load_corpus_time_machine()
    assert f"${data.DATA_DIR_ENV}={env_dir}" in str(info.value) and cached.is_file()


@pytest.mark.parametrize("token", ["char", "word"])
def test_a_file_too_short_for_one_batch_is_named_with_its_token_count(
    no_corpus: Path, token: str
) -> None:
    path = _write(no_corpus / "short.txt", "The Time Machine, by H. G. Wells.\n")
    count = {"char": 29, "word": 7}[token]
    with pytest.raises(CorpusError, match=f"short.txt holds {count} {token} tokens") as info:
        load_data_time_machine(4, 6, token=token, path=path)
    assert "needs at least 31" in str(info.value)  # 4*6 + 6 + 1, sequential


def test_max_tokens_too_small_for_one_batch_names_max_tokens(corpus_env: Path) -> None:
    with pytest.raises(ValueError, match=r"max_tokens=100 keeps too few of the 170580 char"):
        load_data_time_machine(32, 35, max_tokens=100)
