"""Text generation with the book's semantics (d2l 8.5.4), generic over a one-token step.

Letters: V vocabulary.

With the prefix's tokens ``p_0 ... p_{n-1}`` and the state starting at zero (batch 1)::

    outputs = [p_0]
    for k in 1 .. n-1:            warm-up: step on the previous token, keep the true one
        _, state = step(outputs[-1], state);  outputs.append(p_k)
    repeat num_preds times:       prediction: step on the last token, append the model's choice
        logits, state = step(outputs[-1], state);  outputs.append(argmax(logits))

so the first prefix token is fed from the zero state, and ``len(prefix) - 1 + num_preds`` steps run
in all. The choice is the argmax (greedy, the book's) or, given a temperature, a draw from
``softmax(logits / temperature)`` with an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numpy_ref.models import forward
from numpy_ref.spec import ModelSpec, Params, State, begin_state, check_vocab_size

TokenStep = Callable[[int, Any], tuple[Any, Any]]


def is_char_vocab(vocab: Any) -> bool:
    """True when every token but ``<unk>`` (index 0) is a single character."""
    return all(len(token) == 1 for token in vocab.idx_to_token[1:])


def _tokens_of(prefix: str, vocab: Any) -> list[str]:
    return list(prefix) if is_char_vocab(vocab) else prefix.split()


def _choose(logits: Any, temperature: float | None, rng: np.random.Generator | None) -> int:
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)  # (V,)
    if temperature is None:
        return int(np.argmax(logits))  # the first maximum on ties
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())  # (V,), stable softmax
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def generate(
    prefix: str,
    num_preds: int,
    vocab: Any,
    step: TokenStep,
    state: Any,
    temperature: float | None = None,
    rng: np.random.Generator | None = None,
) -> str:
    """Warm up on ``prefix``, then generate ``num_preds`` tokens (module docstring).

    Args:
        prefix: the text to continue, at least one token (characters for a char vocabulary,
            whitespace-separated words otherwise); unknown tokens become ``<unk>`` (index 0).
        num_preds: how many tokens to generate, >= 0.
        vocab: the :class:`numpy_ref.data.Vocab` of the model.
        step: ``step(token_index, state) -> (logits, state)``, one step of batch 1; ``logits``
            (V,) array-like.
        state: the initial state (the zero state of batch 1, as the book).
        temperature: None for greedy argmax; else > 0, sample from ``softmax(logits/temperature)``.
        rng: the generator of the samples; required when ``temperature`` is given.

    Returns:
        ``prefix`` followed by the generated tokens, joined with "" for a char vocabulary (the
        book's output for known characters; the book rebuilds the prefix from indices, which shows
        an unknown character as ``<unk>``) and with " " for a word vocabulary (prefix words
        included).
    """
    if not isinstance(num_preds, (int, np.integer)) or isinstance(num_preds, bool) or num_preds < 0:
        raise ValueError(f"num_preds must be an integer >= 0, got {num_preds!r}")
    if temperature is not None:
        if not temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (or None for greedy argmax), got {temperature!r}"
            )
        if rng is None:
            raise ValueError("sampling with a temperature needs rng=numpy.random.default_rng(seed)")
    tokens = _tokens_of(prefix, vocab)
    if not tokens:
        raise ValueError(f"prefix must hold at least one token to start from, got {prefix!r}")
    outputs = [vocab[tokens[0]]]
    for token in tokens[1:]:  # warm-up: the model reads the prefix, its outputs are ignored
        _, state = step(outputs[-1], state)
        outputs.append(vocab[token])
    generated = []
    for _ in range(num_preds):
        logits, state = step(outputs[-1], state)
        outputs.append(_choose(logits, temperature, rng))
        generated.append(vocab.to_tokens(outputs[-1]))
    if is_char_vocab(vocab):
        return prefix + "".join(generated)
    return " ".join(tokens + generated)


def predict(
    prefix: str,
    num_preds: int,
    spec: ModelSpec,
    params: Params,
    vocab: Any,
    temperature: float | None = None,
    seed: int = 0,
) -> str:
    """The book's ``predict_ch8`` for a NumPy model: :func:`generate` from the zero state.

    Args:
        prefix: the text to continue.
        num_preds: tokens to generate.
        spec: the model; ``spec.vocab_size`` must equal ``len(vocab)``.
        params: the parameters.
        vocab: the model's vocabulary.
        temperature: None for greedy; else the sampling temperature (> 0).
        seed: seed of the sampling generator (unused when greedy).

    Returns:
        ``prefix`` followed by ``num_preds`` generated tokens.
    """
    check_vocab_size(spec, vocab)
    dtype = np.asarray(params["b_q"]).dtype

    def step(token: int, state: State) -> tuple[np.ndarray, State]:
        logits, state = forward(spec, params, np.array([[token]]), state)  # logits (1, 1, V)
        return logits[0, 0], state

    rng = None if temperature is None else np.random.default_rng(seed)
    return generate(prefix, num_preds, vocab, step, begin_state(spec, 1, dtype), temperature, rng)
