"""The model spec and initialiser of numpy_ref, and the zero state as JAX arrays.

Letters: B batch, H hidden, L layers.

There is one initialiser for every implementation (``numpy_ref.spec.init_params``: one seed, one
starting point); :func:`rnn_jax.device.to_jax` turns its NumPy dict into JAX arrays on a device.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from numpy_ref.spec import ModelSpec, Params, State, init_params

__all__ = ["ModelSpec", "Params", "State", "begin_state", "init_params"]


def begin_state(spec: ModelSpec, batch_size: int, dtype: Any = jnp.float32) -> State:
    """The zero state: a tuple of ``spec.num_states`` JAX arrays (L, B, H) on the default device."""
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    return tuple(jnp.zeros(shape, dtype) for _ in range(spec.num_states))
