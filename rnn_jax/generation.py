"""Text generation: numpy_ref's prediction loop over a jit-compiled one-token step.

Letters: V vocabulary, H hidden, L layers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpy_ref import generation as np_generate
from numpy_ref.spec import ModelSpec, Params, State, check_vocab_size
from numpy_ref.spec import begin_state as np_begin_state
from rnn_jax.device import device_of
from rnn_jax.models import _forward


@partial(jax.jit, static_argnums=(0,))
def _token_step(
    spec: ModelSpec, params: Params, token: jax.Array, state: State
) -> tuple[jax.Array, State]:
    logits, state = _forward(spec, params, jnp.reshape(token, (1, 1)), state, "autodiff")
    return logits[0, 0], state  # (V,)


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
    device = device_of(params)
    state = jax.device_put(np_begin_state(spec, 1, np.dtype(params["W_hq"].dtype)), device)

    def step(token_index: int, state: State) -> tuple[np.ndarray, State]:
        token = jax.device_put(np.int32(token_index), device)
        logits, state = _token_step(spec, params, token, state)
        return np.asarray(logits), state

    check_vocab_size(spec, vocab)
    rng = None if temperature is None else np.random.default_rng(seed)
    return np_generate.generate(prefix, num_preds, vocab, step, state, temperature, rng)
