"""The recurrent language models of d2l 8-9 in JAX: ``lax.scan``, ``jit``, optax.

The twin of ``numpy_ref`` (docs/architecture.md, "The twin API"): the same names and signatures,
the same parameter dicts (of JAX arrays), the same data, initialiser, checkpoints and loops, which
come from ``numpy_ref``. Only the compute is JAX's.
"""

from rnn_jax.device import device_name, device_of, get_device, to_jax
from rnn_jax.generation import predict
from rnn_jax.models import GRAD_MODES, forward, forward_loss, loss_and_grads
from rnn_jax.spec import ModelSpec, begin_state, init_params
from rnn_jax.training import evaluate, make_train_step, train, train_epoch

__all__ = [
    "GRAD_MODES",
    "ModelSpec",
    "begin_state",
    "device_name",
    "device_of",
    "evaluate",
    "forward",
    "get_device",
    "init_params",
    "forward_loss",
    "loss_and_grads",
    "make_train_step",
    "predict",
    "to_jax",
    "train",
    "train_epoch",
]
