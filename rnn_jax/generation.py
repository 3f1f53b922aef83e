"""Text generation: numpy_ref's prediction loop over a jit-compiled one-token step.

Letters: V vocabulary, H hidden, L layers.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from numpy_ref.loops import generate
from numpy_ref.spec import ModelSpec, Params, State, check_vocab_size, param_dtype
from rnn_jax.device import device_of
from rnn_jax.models import token_step
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
