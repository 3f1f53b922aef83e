"""numpy_ref: the reference implementation in NumPy, with backpropagation through time by hand.

It is also the framework-agnostic core that ``rnn_jax`` reuses: data, vocabulary, model spec and
initialisation, checkpoints, and the training and generation loops. It imports NumPy only.
"""

# The twin API of docs/architecture.md is importable from the package itself, as in rnn_jax:
# ``import numpy_ref as impl`` and ``import rnn_jax as impl`` offer the same calls.
from numpy_ref.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from numpy_ref.data import (
    CorpusUnavailableError,
    SeqDataLoader,
    Vocab,
    load_corpus_time_machine,
    load_data_time_machine,
    read_time_machine,
    seq_data_iter_random,
    seq_data_iter_sequential,
    split_corpus,
    tokenize,
)
from numpy_ref.generation import generate, predict
from numpy_ref.models import backward, forward, forward_loss, forward_with_cache, loss_and_grads
from numpy_ref.optim import clip_by_global_norm, global_norm, sgd
from numpy_ref.spec import (
    GATES,
    KINDS,
    ModelSpec,
    begin_state,
    flatten_params,
    init_params,
    map_params,
    unflatten_params,
)
from numpy_ref.training import EpochStats, evaluate, run_epoch, train, train_epoch, train_loop

__all__ = [
    "CorpusUnavailableError",
    "SeqDataLoader",
    "Vocab",
    "load_corpus_time_machine",
    "load_data_time_machine",
    "read_time_machine",
    "seq_data_iter_random",
    "seq_data_iter_sequential",
    "split_corpus",
    "tokenize",
    "GATES",
    "KINDS",
    "ModelSpec",
    "begin_state",
    "flatten_params",
    "init_params",
    "map_params",
    "unflatten_params",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "generate",
    "predict",
    "backward",
    "forward",
    "forward_loss",
    "forward_with_cache",
    "loss_and_grads",
    "clip_by_global_norm",
    "global_norm",
    "sgd",
    "EpochStats",
    "evaluate",
    "run_epoch",
    "train",
    "train_epoch",
    "train_loop",
]
