"""Training and evaluation of the NumPy models with the book's semantics (d2l 8.5.5).

Letters: B batch, T steps.

One training step is the book's: the loss and its gradient by hand-written BPTT
(:func:`numpy_ref.models.loss_and_grads`), the gradient clipped to a global norm of ``theta``,
one SGD step of ``lr`` (:mod:`numpy_ref.optim`). The epoch and the run are the shared loops of
:mod:`numpy_ref.loops`; ``rnn_jax.training`` runs the same loops over its jitted step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from numpy_ref import loops
from numpy_ref.loops import Batch, EpochStats
from numpy_ref.models import forward_loss, loss_and_grads
from numpy_ref.optim import clip_by_global_norm, global_norm, sgd
from numpy_ref.spec import ModelSpec, Params, State, begin_state, check_vocab_size, param_dtype


def train_epoch(
    spec: ModelSpec,
    params: Params,
    loader: Iterable[Batch],
    lr: float,
    theta: float,
    use_random_iter: bool,
) -> tuple[Params, EpochStats]:
    """One epoch of the book's training: BPTT, clip to ``theta``, SGD with ``lr``, per minibatch.

    Args:
        spec: the model.
        params: the parameters at the start of the epoch (not modified).
        loader: iterable of int ``(X, Y)`` minibatches, each (B, T).
        lr: learning rate, a finite number > 0.
        theta: clipping threshold of the global gradient norm, a finite number > 0.
        use_random_iter: zero state for every minibatch instead of carrying it.

    Returns:
        The parameters after the epoch and its :class:`EpochStats`.
    """
    loops.check_rates(lr, theta)
    dtype = param_dtype(params)

    def step(params: Params, X: np.ndarray, Y: np.ndarray, state: State):
        loss, grads, state = loss_and_grads(spec, params, X, Y, state)
        norm = global_norm(grads)
        grads = clip_by_global_norm(grads, theta, norm)
        return sgd(params, grads, lr), loss, state, norm

    return loops.run_epoch(
        step,
        params,
        loader,
        lambda batch_size: begin_state(spec, batch_size, dtype),
        use_random_iter,
    )


def train(
    spec: ModelSpec,
    params: Params,
    loader: Iterable[Batch],
    vocab: Any,
    lr: float,
    theta: float,
    num_epochs: int,
    use_random_iter: bool,
    callback: Callable[[int, Params, EpochStats], Any] | None = None,
) -> tuple[Params, list[EpochStats]]:
    """The book's ``train_ch8``: ``num_epochs`` of :func:`train_epoch`, each from the zero state.

    Args:
        spec: the model.
        params: the starting parameters (not modified).
        loader: a re-iterable loader (each pass is one epoch), e.g. a ``SeqDataLoader``.
        vocab: the vocabulary of the corpus; its size must be ``spec.vocab_size``.
        lr, theta, use_random_iter: as :func:`train_epoch`.
        num_epochs: >= 0.
        callback: ``callback(epoch, params, stats)`` after every epoch, ``epoch`` from 1 (the
            experiments print the book's predictions from here).

    Returns:
        The final parameters and one :class:`EpochStats` per epoch.
    """
    check_vocab_size(spec, vocab)
    loops.check_rates(lr, theta)
    return loops.train_loop(
        lambda p: train_epoch(spec, p, loader, lr, theta, use_random_iter),
        params,
        num_epochs,
        callback,
    )


def evaluate(spec: ModelSpec, params: Params, loader: Iterable[Batch]) -> float:
    """Perplexity of the model on ``loader``'s data, without updating it (:func:`loops.evaluate`).

    Args:
        spec: the model.
        params: the parameters.
        loader: iterable of int ``(X, Y)`` minibatches.

    Returns:
        ``exp`` of the mean cross-entropy per token.
    """
    dtype = param_dtype(params)
    return loops.evaluate(
        lambda X, Y, state: forward_loss(spec, params, X, Y, state),
        loader,
        lambda batch_size: begin_state(spec, batch_size, dtype),
    )
