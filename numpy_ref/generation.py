"""Text generation from a NumPy model: the book's ``predict_ch8`` (d2l 8.5.4).

Letters: V vocabulary. The loop (warm-up on the prefix, then greedy or sampled choices) is
:func:`numpy_ref.loops.generate`; this module gives it a one-token step of the NumPy model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpy_ref.loops import generate
from numpy_ref.models import forward
from numpy_ref.spec import ModelSpec, Params, State, begin_state, check_vocab_size, param_dtype


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

    def step(token: int, state: State) -> tuple[np.ndarray, State]:
        logits, state = forward(spec, params, np.array([[token]]), state)  # logits (1, 1, V)
        return logits[0, 0], state

    rng = None if temperature is None else np.random.default_rng(seed)
    state = begin_state(spec, 1, param_dtype(params))
    return generate(prefix, num_preds, vocab, step, state, temperature, rng)
