"""numpy_ref: the reference implementation in NumPy, with backpropagation through time by hand.

It is also the framework-agnostic core that ``rnn_jax`` reuses: data, vocabulary, model spec and
initialisation, checkpoints, and the training and generation loops. It imports NumPy only.
"""

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
]
