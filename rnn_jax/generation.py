"""Text generation: numpy_ref's prediction loop over a jit-compiled one-token step, and the
greedy continuation of many prefixes by many members as one compiled scan (what a run prints).

Letters: V vocabulary, H hidden, L layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from numpy_ref.checks import check_int
from numpy_ref.loops import generate, joined, tokens_of
from numpy_ref.spec import ModelSpec, Params, State, check_vocab_size, param_dtype
from rnn_jax.device import device_of
from rnn_jax.models import EVALUATE, apply, token_step
from rnn_jax.spec import begin_state


def predict(
    prefix: str,
    num_preds: int,
    spec: ModelSpec,
    params: Params,
    vocab: Any,
    temperature: float | None = None,
    seed: int = 0,
) -> str:
    """Continue ``prefix`` by ``num_preds`` tokens, as the book's ``predict_ch8``.

    Warm-up on the prefix from a zero state of batch 1, then greedy (argmax) choices, or samples
    at ``temperature`` from ``numpy.random.default_rng(seed)``; the loop is numpy_ref's.

    Returns:
        The prefix followed by the ``num_preds`` generated tokens.
    """
    check_vocab_size(spec, vocab)
    device = device_of(params)

    def step(token_index: int, state: State) -> tuple[np.ndarray, State]:
        token = jax.device_put(np.int32(token_index), device)
        logits, state = token_step(spec, params, token, state)
        return np.asarray(logits), state

    state = begin_state(spec, 1, param_dtype(params), device)
    rng = None if temperature is None else np.random.default_rng(seed)
    return generate(prefix, num_preds, vocab, step, state, temperature, rng)


@lru_cache(maxsize=32)
def _greedy_program(spec: ModelSpec, num_preds: int) -> Any:
    """``program(params, tokens (P, W), starts (P,)) -> (P, num_preds)``: the book's greedy
    continuation of P prefixes at once, for every member of ``params`` (M, ...): (M, P,
    num_preds) token indices. Prefix p sits right-aligned in its row of ``tokens``, from column
    ``starts[p]``; its state stays zero until then, so it is the book's loop from a zero state."""

    def member(params, tokens, starts):
        W = tokens.shape[1]
        dtype = jax.tree.leaves(params)[0].dtype

        def body(carry, t):
            state, previous = carry
            x = jnp.where(t < W, tokens[:, jnp.minimum(t, W - 1)], previous)  # (P,)
            logits, new_state = apply(spec, params, x[:, None], state, EVALUATE)  # (1, P, V)
            started = (t >= starts)[None, :, None]  # (1, P, 1) against states (L, P, H)
            state = tuple(jnp.where(started, n, s) for n, s in zip(new_state, state, strict=True))
            choice = jnp.argmax(logits[0], axis=-1).astype(tokens.dtype)  # (P,), first maximum
            return (state, choice), choice

        state = tuple(
            jnp.zeros((spec.num_layers, tokens.shape[0], spec.num_hiddens), dtype)
            for _ in range(spec.num_states)
        )
        steps = jnp.arange(W - 1 + num_preds)
        _, choices = lax.scan(body, (state, tokens[:, -1]), steps)  # (steps, P)
        return choices[W - 1 :].T  # the choices after each prefix's last token

    return jax.jit(jax.vmap(member, in_axes=(0, None, None)))


def predict_greedy(
    prefixes: Sequence[str],
    num_preds: int,
    spec: ModelSpec,
    params: Params,
    vocab: Any,
    rows: Any = np.asarray,
) -> list[list[str]]:
    """The book's greedy continuation of every prefix by every member, in one compiled call.

    Args:
        prefixes: the texts to continue, each at least one token.
        num_preds: tokens to generate, >= 0.
        spec: the model.
        params: the members' parameters (shared or packed form), every array (M, ...).
        vocab: the vocabulary of the model.
        rows: reads this process's members' rows of a (M, ...) result back to the host
            (``rnn_jax.epoch.Placement.rows`` where the members are split over processes).

    Returns:
        Per member (of this process), per prefix: what :func:`predict` returns for it (the
        same computation, with the prefixes as the rows of one batch).
    """
    check_vocab_size(spec, vocab)
    check_int("num_preds", num_preds, minimum=0)
    indices = [[vocab[token] for token in tokens_of(prefix, vocab)] for prefix in prefixes]
    if not all(indices):
        raise ValueError(f"every prefix must hold at least one token, got {list(prefixes)!r}")
    width = max(len(row) for row in indices)
    tokens = np.zeros((len(indices), width), np.int32)
    for p, row in enumerate(indices):
        tokens[p, width - len(row) :] = row
    starts = np.array([width - len(row) for row in indices], np.int32)
    choices = rows(_greedy_program(spec, num_preds)(params, tokens, starts))  # (M, P, num_preds)
    return [
        [
            joined(prefix, vocab.to_tokens(list(map(int, c))), vocab)
            for prefix, c in zip(prefixes, member, strict=True)
        ]
        for member in choices
    ]
