"""The zero state as JAX arrays on a device; the spec and initialiser are numpy_ref's.

Letters: B batch, H hidden, L layers.

There is one initialiser for every implementation (``numpy_ref.spec.init_params``: one seed, one
starting point); :func:`rnn_jax.device.to_jax` turns its NumPy dict into JAX arrays on a device.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from numpy_ref import spec as np_spec
from numpy_ref.spec import ModelSpec, State


def begin_state(
    spec: ModelSpec, batch_size: int, dtype: Any = np.float32, device: Any = None
) -> State:
    """The zero state: a tuple of ``spec.num_states`` JAX arrays (L, B, H).

    Args:
        spec: the model.
        batch_size: B.
        dtype: the parameters' dtype.
        device: a ``jax.Device`` (or sharding) to put it on; None for JAX's default device.
    """
    return jax.device_put(np_spec.begin_state(spec, batch_size, dtype), device)
