"""Tokens and the vocabulary (d2l 8.2): characters or words, and the token <-> index table."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

TOKEN_KINDS = ("char", "word")


def check_token_kind(token: str) -> None:
    if token not in TOKEN_KINDS:
        raise ValueError(f"token must be one of {TOKEN_KINDS}, got {token!r}")


def tokenize(lines: Sequence[str], token: str = "char") -> list[list[str]]:
    """Split each line into characters or whitespace-separated words."""
    check_token_kind(token)
    if token == "word":
        return [line.split() for line in lines]
    return [list(line) for line in lines]


def flatten_tokens(tokens: Iterable[Any]) -> list[str]:
    return [t for line in tokens for t in line] if _is_nested(tokens) else list(tokens)


def _is_nested(tokens: Any) -> bool:
    return isinstance(tokens, (list, tuple)) and len(tokens) > 0 and isinstance(tokens[0], list)


class Vocab:
    """Token ↔ index table.

    Index 0 is ``<unk>``, then the reserved tokens in the given order, then every token of frequency
    at least ``min_freq`` by descending frequency; ties keep the order of first appearance in
    ``tokens`` (a stable sort of first-seen order, the same order the book's ``Counter`` gives).
    Unknown tokens map to 0. :meth:`from_counts` builds the same table from (token, count) pairs.

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
        counter = collections.Counter(flatten_tokens(tokens))  # first-seen order
        self._build(counter.items(), min_freq, reserved_tokens)

    @classmethod
    def from_counts(
        cls,
        token_counts: Iterable[tuple[str, int]],
        min_freq: int = 0,
        reserved_tokens: Sequence[str] = (),
    ) -> Vocab:
        """The vocabulary of a text given as its (token, count) pairs, without its tokens.

        Args:
            token_counts: each distinct token once, in the order of first appearance in the text
                (ties in count keep this order), with its count.
            min_freq, reserved_tokens: as for the constructor.

        Returns:
            The same :class:`Vocab` as ``Vocab(tokens, min_freq, reserved_tokens)``.
        """
        vocab = cls.__new__(cls)
        vocab._build(token_counts, min_freq, reserved_tokens)
        return vocab

    def _build(
        self,
        token_counts: Iterable[tuple[str, int]],
        min_freq: int,
        reserved_tokens: Sequence[str],
    ) -> None:
        if self.UNK in reserved_tokens or len(set(reserved_tokens)) != len(reserved_tokens):
            raise ValueError(
                f"reserved_tokens must be distinct and must not contain {self.UNK!r} "
                f"(it is always index 0), got {list(reserved_tokens)!r}"
            )
        # A stable sort: equal counts keep their first-seen order.
        pairs = ((t, int(n)) for t, n in token_counts)
        self._token_freqs = sorted(pairs, key=lambda item: item[1], reverse=True)
        self.idx_to_token = [self.UNK, *reserved_tokens]
        taken = set(self.idx_to_token)
        self.idx_to_token += [
            t for t, freq in self._token_freqs if freq >= min_freq and t not in taken
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
