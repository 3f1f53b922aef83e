"""Training and evaluation loops with the book's semantics (d2l 8.5.5), generic over a step.

Letters: B batch, T steps, L layers, H hidden.

:func:`run_epoch` and :func:`train_loop` know nothing about NumPy or JAX: they take a ``step``
function and thread a ``carry`` (the parameters, or parameters and optimiser state) through it, so
``rnn_jax`` reuses them unchanged. One epoch, as the book::

    for each minibatch (X, Y):
        state = begin_state(B)      on the first minibatch, or for every one under random iteration
        state = detach(state)       otherwise: carry the values, cut the gradient (truncated BPTT)
        carry, loss, state = step(carry, X, Y, state)
        total = total + loss * X.size

    perplexity = exp(total / number of tokens)
    tokens/s   = number of tokens / wall time of the epoch, data iteration included

``total`` is accumulated with ``+`` and ``*`` only and turned into a float once, at the end, so a
JAX step keeps dispatching asynchronously. Every epoch starts from the zero state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpy_ref.models import forward_loss, loss_and_grads
from numpy_ref.optim import clip_by_global_norm, sgd
from numpy_ref.spec import ModelSpec, Params, State, begin_state, check_vocab_size

Batch = tuple[np.ndarray, np.ndarray]
Step = Callable[[Any, Any, Any, State], tuple[Any, Any, State]]


@dataclass(frozen=True)
class EpochStats:
    """What one pass over the data measured.

    Attributes:
        perplexity: ``exp`` of the mean cross-entropy per token over the epoch.
        tokens_per_sec: ``num_tokens / seconds``.
        num_tokens: targets seen in the epoch (the sum of ``Y.size``).
        seconds: wall time of the epoch, data iteration included.
    """

    perplexity: float
    tokens_per_sec: float
    num_tokens: int
    seconds: float


def perplexity_of(total_loss: float, num_tokens: int) -> float:
    """``exp(total_loss / num_tokens)``, ``inf`` when that overflows a float."""
    try:
        return math.exp(total_loss / num_tokens)
    except OverflowError:
        return math.inf


def run_epoch(
    step: Step,
    carry: Any,
    loader: Iterable[Batch],
    begin_state: Callable[[int], State],
    detach: Callable[[State], State],
    use_random_iter: bool,
    *,
    sync: Callable[[Any], Any] | None = None,
) -> tuple[Any, EpochStats]:
    """One pass over ``loader`` with the book's state handling; the generic loop of both twins.

    Args:
        step: ``step(carry, X, Y, state) -> (carry, loss, state)`` for one minibatch; ``X``,
            ``Y`` int (B, T); ``loss`` the mean cross-entropy (a float, or a 0-d array of any
            framework supporting ``loss * n`` and ``+``).
        carry: what ``step`` threads through the epoch (e.g. the parameters).
        loader: iterable of ``(X, Y)`` minibatches; iterated once.
        begin_state: ``begin_state(batch_size) -> state``, the zero state.
        detach: ``detach(state) -> state``, the same values without gradient history.
        use_random_iter: start every minibatch from the zero state (random sampling: neighbouring
            minibatches are not adjacent in the text) instead of carrying the state.
        sync: called on the final carry before the clock stops, so that asynchronous work is
            timed (JAX: ``jax.block_until_ready``); ``None`` for synchronous code.

    Returns:
        The final carry and the epoch's :class:`EpochStats`.
    """
    start = time.perf_counter()
    state: State | None = None
    total: Any = 0.0
    num_tokens = 0
    for X, Y in loader:
        if state is None or use_random_iter:
            state = begin_state(X.shape[0])
        else:
            state = detach(state)
        carry, loss, state = step(carry, X, Y, state)
        total = total + loss * Y.size  # no float() here: keeps asynchronous dispatch
        num_tokens += int(Y.size)
    if num_tokens == 0:
        raise ValueError(
            "the loader yielded no minibatch; use a longer corpus or a smaller batch_size/num_steps"
        )
    total = float(total)  # the one synchronisation point of the losses
    if sync is not None:
        sync(carry)
    seconds = time.perf_counter() - start
    stats = EpochStats(
        perplexity=perplexity_of(total, num_tokens),
        tokens_per_sec=num_tokens / seconds,
        num_tokens=num_tokens,
        seconds=seconds,
    )
    return carry, stats


def train_loop(
    epoch_fn: Callable[[Any], tuple[Any, EpochStats]],
    carry: Any,
    num_epochs: int,
    callback: Callable[[int, Any, EpochStats], Any] | None = None,
) -> tuple[Any, list[EpochStats]]:
    """Run ``epoch_fn`` ``num_epochs`` times, keeping the history and calling ``callback``.

    Args:
        epoch_fn: ``epoch_fn(carry) -> (carry, stats)``, one epoch.
        carry: the starting carry (e.g. the parameters).
        num_epochs: >= 0.
        callback: ``callback(epoch, carry, stats)`` after every epoch, ``epoch`` counted from 1.

    Returns:
        The final carry and the list of the epochs' stats.
    """
    if not isinstance(num_epochs, (int, np.integer)) or isinstance(num_epochs, bool):
        raise ValueError(f"num_epochs must be an integer >= 0, got {num_epochs!r}")
    if num_epochs < 0:
        raise ValueError(f"num_epochs must be an integer >= 0, got {num_epochs!r}")
    history = []
    for epoch in range(1, num_epochs + 1):
        carry, stats = epoch_fn(carry)
        history.append(stats)
        if callback is not None:
            callback(epoch, carry, stats)
    return carry, history


def _keep(state: State) -> State:
    """NumPy's ``detach``: a NumPy state has no gradient history to cut.

    The backward of :func:`numpy_ref.models.loss_and_grads` stops at the minibatch's initial
    state by construction, which is exactly what detaching does in an autodiff framework.
    """
    return state


def _param_dtype(params: Params) -> np.dtype:
    return np.asarray(params["b_q"]).dtype


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
        lr: learning rate.
        theta: clipping threshold of the global gradient norm.
        use_random_iter: zero state for every minibatch instead of carrying it.

    Returns:
        The parameters after the epoch and its :class:`EpochStats`.
    """
    dtype = _param_dtype(params)

    def step(params: Params, X: np.ndarray, Y: np.ndarray, state: State):
        loss, grads, state = loss_and_grads(spec, params, X, Y, state)
        grads = clip_by_global_norm(grads, theta)
        return sgd(params, grads, lr), loss, state

    return run_epoch(
        step,
        params,
        loader,
        begin_state=lambda batch_size: begin_state(spec, batch_size, dtype),
        detach=_keep,
        use_random_iter=use_random_iter,
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
    return train_loop(
        lambda p: train_epoch(spec, p, loader, lr, theta, use_random_iter),
        params,
        num_epochs,
        callback,
    )


def evaluate(spec: ModelSpec, params: Params, loader: Iterable[Batch]) -> float:
    """Perplexity of the model on ``loader``'s data, without updating it.

    The state is carried from one minibatch to the next, as in sequential training; a loader
    with ``use_random_iter=True`` (non-adjacent minibatches) gets the zero state for each one.

    Args:
        spec: the model.
        params: the parameters.
        loader: iterable of int ``(X, Y)`` minibatches.

    Returns:
        ``exp`` of the mean cross-entropy per token.
    """
    dtype = _param_dtype(params)

    def step(carry: None, X: np.ndarray, Y: np.ndarray, state: State):
        loss, state = forward_loss(spec, params, X, Y, state)
        return carry, loss, state

    _, stats = run_epoch(
        step,
        None,
        loader,
        begin_state=lambda batch_size: begin_state(spec, batch_size, dtype),
        detach=_keep,
        use_random_iter=bool(getattr(loader, "use_random_iter", False)),
    )
    return stats.perplexity
