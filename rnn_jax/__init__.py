"""The recurrent language models of d2l 8-9 in JAX: ``lax.scan``, ``jit``, optax.

The twin of ``numpy_ref`` (docs/architecture.md, "The twin API"): the names of
``numpy_ref.TWIN`` computed with JAX, with the same signatures and the same parameter dicts (of JAX
arrays); the names of ``numpy_ref.SHARED`` (spec, initialiser, data pipeline, vocabulary,
checkpoints) are numpy_ref's very objects. Only the compute is JAX's.
"""

import numpy_ref
from numpy_ref import (  # noqa: F401  (numpy_ref.SHARED, re-exported as they are)
    GATES,
    KINDS,
    Checkpoint,
    CheckpointError,
    CorpusError,
    CorpusUnavailableError,
    EpochStats,
    ModelSpec,
    SeqDataLoader,
    Vocab,
    flatten_params,
    init_params,
    load_checkpoint,
    load_corpus_time_machine,
    load_data_time_machine,
    map_params,
    read_time_machine,
    save_checkpoint,
    seq_data_iter_random,
    seq_data_iter_sequential,
    split_corpus,
    tokenize,
    unflatten_params,
)
from rnn_jax.device import device_name, device_of, get_device, to_jax  # noqa: F401
from rnn_jax.generation import predict  # noqa: F401
from rnn_jax.models import GRAD_MODES, forward, forward_loss, loss_and_grads  # noqa: F401
from rnn_jax.spec import begin_state  # noqa: F401
from rnn_jax.training import evaluate, make_train_step, train, train_epoch  # noqa: F401

# JAX's own: the gradient modes, the jitted step, devices
OWN = ("GRAD_MODES", "make_train_step", "to_jax", "get_device", "device_name", "device_of")

__all__ = [*numpy_ref.TWIN, *numpy_ref.SHARED, *OWN]
