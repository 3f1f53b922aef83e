"""Training and evaluation: one jit-compiled step, driven by numpy_ref's per-epoch loop.

Letters: B batch, T steps, V vocabulary, H hidden, L layers.

A training step is, as in the book and ``numpy_ref``: loss and gradients on one minibatch, the
gradients scaled by ``min(1, theta / ||g||)`` (``optax.clip_by_global_norm``, Pascanu et al. 2013;
optax leaves them as they are when ``||g|| < theta`` and multiplies by ``theta / ||g||``
otherwise, which is the book's rule up to rounding at ``||g|| == theta`` exactly), then plain SGD
``p <- p - lr * g`` (``optax.sgd``). The whole step is one ``jit`` region, compiled once per
(spec, lr, theta, grad_mode) and minibatch shape, with the parameter and optimiser buffers donated
so that XLA updates them in place.

The epoch loop itself (state carried or reset, ``loss * n`` accumulated on the device, perplexity
and tokens/s) is ``numpy_ref.training.run_epoch``; batches come from ``numpy_ref``'s loaders and are
put on the parameters' device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import jax
import numpy as np
import optax
from jax import lax

from numpy_ref import training as np_train
from numpy_ref.spec import ModelSpec, Params, State, check_vocab_size
from numpy_ref.spec import begin_state as np_begin_state
from numpy_ref.training import EpochStats
from rnn_jax.device import device_of, to_jax
from rnn_jax.models import check_grad_mode, forward_loss, loss_and_grads_fn

Batch = tuple[np.ndarray, np.ndarray]
TrainStep = Callable[[Params, Any, Any, Any, State], tuple[Params, Any, jax.Array, State]]


@lru_cache(maxsize=64)
def make_train_step(
    spec: ModelSpec, lr: float, theta: float, grad_mode: str = "bptt"
) -> tuple[Callable[[Params], Any], TrainStep]:
    """The optimiser's init and the jit-compiled training step.

    Args:
        spec: the model.
        lr: learning rate of the SGD step.
        theta: clipping threshold of the global gradient norm.
        grad_mode: ``"bptt"`` (hand-written backward) or ``"autodiff"``.

    Returns:
        ``(init_opt_state, step)``: ``init_opt_state(params) -> opt_state``;
        ``step(params, opt_state, X (B, T), Y (B, T), state) -> (params, opt_state, loss (),
        state)``. ``params`` and ``opt_state`` are donated: do not use them after the call.
        Cached: the same arguments give the same (already compiled) functions.
    """
    check_grad_mode(grad_mode)
    if not theta > 0:
        raise ValueError(f"theta (the clipping threshold) must be > 0, got {theta!r}")
    optimizer = optax.chain(optax.clip_by_global_norm(theta), optax.sgd(lr))
    loss_and_grads = loss_and_grads_fn(spec, grad_mode)

    def step(params, opt_state, X, Y, state):
        loss, grads, state = loss_and_grads(params, X, Y, state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, state

    return optimizer.init, jax.jit(step, donate_argnums=(0, 1))


def _detach(state: State) -> State:
    return tuple(lax.stop_gradient(s) for s in state)


def _state_maker(spec: ModelSpec, params: Params, device: Any) -> Callable[[int], State]:
    dtype = np.dtype(params["W_hq"].dtype)

    def make(batch_size: int) -> State:
        return jax.device_put(np_begin_state(spec, batch_size, dtype), device)

    return make


def train_epoch(
    spec: ModelSpec,
    params: Params,
    loader: Iterable[Batch],
    lr: float,
    theta: float,
    use_random_iter: bool,
    grad_mode: str = "bptt",
) -> tuple[Params, EpochStats]:
    """One pass over ``loader``, as the book's ``train_epoch_ch8``.

    Args:
        spec: the model.
        params: the parameter dict (JAX arrays; NumPy arrays go to the default device). Not
            modified: the epoch trains a copy on the same device.
        loader: yields ``(X, Y)`` int NumPy arrays (B, T).
        lr: SGD learning rate.
        theta: gradient clipping threshold.
        use_random_iter: start every minibatch from the zero state; else carry the state
            (without its gradient) from one minibatch to the next.
        grad_mode: ``"bptt"`` or ``"autodiff"``.

    Returns:
        ``(params, stats)``: the trained parameters and the epoch's perplexity and tokens/s.
    """
    init_opt_state, train_step = make_train_step(spec, float(lr), float(theta), grad_mode)
    device = device_of(params)
    params = to_jax(params, device)  # new buffers: the caller's survive the donation

    def step(carry, X, Y, state):
        params, opt_state = carry
        X, Y = jax.device_put((X, Y), device)
        params, opt_state, loss, state = train_step(params, opt_state, X, Y, state)
        return (params, opt_state), loss, state

    (params, _), stats = np_train.run_epoch(
        step,
        (params, init_opt_state(params)),
        loader,
        _state_maker(spec, params, device),
        _detach,
        use_random_iter,
        sync=jax.block_until_ready,
    )
    return params, stats


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
    grad_mode: str = "bptt",
) -> tuple[Params, list[EpochStats]]:
    """The book's ``train_ch8``: ``num_epochs`` of :func:`train_epoch` (numpy_ref's loop).

    Args:
        spec, params, loader, lr, theta, use_random_iter, grad_mode: as :func:`train_epoch`.
        vocab: the vocabulary of the corpus; its size must be ``spec.vocab_size``.
        num_epochs: >= 0.
        callback: ``callback(epoch, params, stats)`` after every epoch, ``epoch`` from 1.

    Returns:
        ``(params, history)``: the final parameters and one ``EpochStats`` per epoch.
    """
    check_vocab_size(spec, vocab)
    return np_train.train_loop(
        lambda p: train_epoch(spec, p, loader, lr, theta, use_random_iter, grad_mode),
        params,
        num_epochs,
        callback,
    )


def evaluate(spec: ModelSpec, params: Params, loader: Iterable[Batch]) -> float:
    """Perplexity of ``params`` on ``loader``'s data, without updating them.

    The state is carried from one minibatch to the next, as in sequential training; a loader
    with ``use_random_iter=True`` (non-adjacent minibatches) gets the zero state for each one.
    """
    device = device_of(params)

    def step(carry, X, Y, state):
        X, Y = jax.device_put((X, Y), device)
        batch_loss, state = forward_loss(spec, carry, X, Y, state)
        return carry, batch_loss, state

    _, stats = np_train.run_epoch(
        step,
        params,
        loader,
        _state_maker(spec, params, device),
        _detach,
        bool(getattr(loader, "use_random_iter", False)),
    )
    return float(stats.perplexity)
