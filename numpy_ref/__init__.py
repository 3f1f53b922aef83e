"""numpy_ref: the reference implementation in NumPy, with backpropagation through time by hand.

It is also the framework-agnostic core that ``rnn_jax`` reuses: data, vocabulary, model spec and
initialisation, checkpoints, and the training and generation loops. It imports NumPy only.

``import numpy_ref as impl`` and ``import rnn_jax as impl`` offer the same calls
(docs/architecture.md, "The twin API"): :data:`TWIN` are computed by each package in its own
way, :data:`SHARED` are the very same objects in both. (The imports below are the public names,
re-exported through ``__all__``, which the three lists build.)
"""

from numpy_ref.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint  # noqa: F401
from numpy_ref.corpus import CorpusError, CorpusUnavailableError, read_time_machine  # noqa: F401
from numpy_ref.data import (  # noqa: F401
    SeqDataLoader,
    load_corpus_time_machine,
    load_data_time_machine,
    seq_data_iter_random,
    seq_data_iter_sequential,
    split_corpus,
)
from numpy_ref.generation import predict  # noqa: F401
from numpy_ref.loops import EpochStats, generate, run_epoch, train_loop  # noqa: F401
from numpy_ref.models import backward, forward, forward_loss, forward_with_cache, loss_and_grads  # noqa: F401
from numpy_ref.optim import clip_by_global_norm, global_norm, sgd  # noqa: F401
from numpy_ref.spec import (  # noqa: F401
    GATES,
    KINDS,
    ModelSpec,
    begin_state,
    flatten_params,
    init_params,
    map_params,
    unflatten_params,
)
from numpy_ref.training import evaluate, train, train_epoch  # noqa: F401
from numpy_ref.vocab import Vocab, tokenize  # noqa: F401

# Computed by each twin in its own way: the same names and leading parameters in rnn_jax.
TWIN = (
    "begin_state",
    "forward",
    "forward_loss",
    "loss_and_grads",
    "evaluate",
    "train_epoch",
    "train",
    "predict",
)
# Plain arrays and files: one implementation, here, that rnn_jax re-exports as it is.
SHARED = (
    "ModelSpec",
    "init_params",
    "KINDS",
    "GATES",
    "flatten_params",
    "unflatten_params",
    "map_params",
    "Vocab",
    "tokenize",
    "read_time_machine",
    "load_corpus_time_machine",
    "load_data_time_machine",
    "split_corpus",
    "seq_data_iter_random",
    "seq_data_iter_sequential",
    "SeqDataLoader",
    "CorpusUnavailableError",
    "CorpusError",
    "EpochStats",
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
)
# The NumPy engine's own parts (BPTT, clipping, SGD) and the generic loops rnn_jax runs over.
OWN = (
    "forward_with_cache",
    "backward",
    "global_norm",
    "clip_by_global_norm",
    "sgd",
    "run_epoch",
    "train_loop",
    "generate",
)

__all__ = [*TWIN, *SHARED, *OWN]
