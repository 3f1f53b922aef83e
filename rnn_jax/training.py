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
and tokens/s) is ``numpy_ref.loops.run_epoch``; batches come from ``numpy_ref``'s loaders and are
put on the parameters' device.

**The packed form.** An epoch trains the parameters :func:`pack`-ed: each layer's per-gate arrays
side by side, 3 arrays a layer instead of 3 per gate, so that the step computes each layer's
gradient as 3 arrays, clips and updates them as 3 (not 12 for the LSTM, each its own XLA kernel
to compile and to run), and never slices them per gate; the model takes either form
(``rnn_jax.cells.stack_layer``). Packing is exact, and the epoch hands back the shared dict
(:func:`unpack`). Only the gradient norm's sum is in another order: the same to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import jax
import numpy as np
import optax

from numpy_ref import cells as np_cells
from numpy_ref import loops
from numpy_ref import spec as np_spec
from numpy_ref.loops import Batch, EpochStats
from numpy_ref.spec import ModelSpec, Params, State, check_vocab_size, param_dtype
from rnn_jax.cells import PACKED
from rnn_jax.device import device_of, to_jax
from rnn_jax.models import check_grad_mode, forward_loss, loss_and_grads_fn
from rnn_jax.spec import begin_state

TrainStep = Callable[
    [Params, Any, Any, Any, State], tuple[Params, Any, jax.Array, State, jax.Array]
]


def pack(spec: ModelSpec, params: Params, device: Any = None) -> Params:
    """The training step's form of ``params``: each layer's gates side by side, ``{"W_x" (D, G*H),
    "W_h" (H, G*H), "b" (G*H,)}`` (``numpy_ref.spec.stack_layer``); ``W_hq``, ``b_q`` as they
    are. JAX arrays in new buffers on ``device`` (default: where ``params`` are), safe to donate.
    Stacked on the host: nothing to compile."""
    cell = np_cells.cell_for(spec)
    host = jax.tree.map(np.asarray, params)
    layers = [
        dict(zip(PACKED, np_spec.stack_layer(cell, layer), strict=True)) for layer in host["layers"]
    ]
    return to_jax({**host, "layers": layers}, device or device_of(params))


def unpack(spec: ModelSpec, packed: Params) -> Params:
    """The shared parameter dict of :func:`pack`'s form, on the same device."""
    cell = np_cells.cell_for(spec)
    host = jax.tree.map(np.asarray, packed)
    layers = [np_spec.unstack_layer(cell, *(lay[k] for k in PACKED)) for lay in host["layers"]]
    return to_jax({**host, "layers": layers}, device_of(packed))


def train_step_fn(spec: ModelSpec, grad_mode: str = "bptt") -> Callable[..., Any]:
    """The un-jitted training step with the learning rate and the threshold as arguments.

    ``step(params, opt_state, X, Y, state, lr, theta) -> (params, opt_state, loss, state,
    grad_norm)``: loss and gradients, ``optax.clip_by_global_norm(theta)``, ``optax.sgd(lr)``.
    ``lr`` and ``theta`` may be traced values (one compiled program for many of them, as a
    population under ``jax.vmap`` needs); both transformations are stateless, so the optimiser
    state does not depend on them.
    """
    check_grad_mode(grad_mode)
    loss_and_grads = loss_and_grads_fn(spec, grad_mode)

    def step(params, opt_state, X, Y, state, lr, theta):
        loss, grads, state = loss_and_grads(params, X, Y, state)
        optimizer = optax.chain(optax.clip_by_global_norm(theta), optax.sgd(lr))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, state, optax.tree.norm(grads)

    return step


def init_opt_state(params: Params) -> Any:
    """The optimiser state of :func:`train_step_fn` (empty: clipping and plain SGD keep none)."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0)).init(params)


@lru_cache(maxsize=64)
def make_train_step(
    spec: ModelSpec, lr: float, theta: float, grad_mode: str = "bptt"
) -> tuple[Callable[[Params], Any], TrainStep]:
    """The optimiser's init and the jit-compiled training step.

    Args:
        spec: the model.
        lr: learning rate of the SGD step, a finite number > 0.
        theta: clipping threshold of the global gradient norm, a finite number > 0.
        grad_mode: ``"bptt"`` (hand-written backward) or ``"autodiff"``.

    Returns:
        ``(init_opt_state, step)``: ``init_opt_state(params) -> opt_state``;
        ``step(params, opt_state, X (B, T), Y (B, T), state) -> (params, opt_state, loss (),
        state, grad_norm ())``, ``grad_norm`` the global norm before clipping. ``params`` and
        ``opt_state`` are donated: do not use them after the call. ``params`` in either form,
        the shared dict or :func:`pack`'s (fewer kernels: what :func:`train_epoch` uses).
        Cached: the same arguments give the same (already compiled) functions.
    """
    loops.check_rates(lr, theta)
    step = train_step_fn(spec, grad_mode)

    def fixed(params, opt_state, X, Y, state):
        return step(params, opt_state, X, Y, state, lr, theta)

    return init_opt_state, jax.jit(fixed, donate_argnums=(0, 1))


def _zero_state(spec: ModelSpec, params: Params, device: Any) -> Callable[[int], State]:
    dtype = param_dtype(params)
    return lambda batch_size: begin_state(spec, batch_size, dtype, device)


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
            from one minibatch to the next (a plain array between two jitted steps: its
            gradient history is already cut).
        grad_mode: ``"bptt"`` or ``"autodiff"``.

    Returns:
        ``(params, stats)``: the trained parameters and the epoch's perplexity and tokens/s.
    """
    init_opt_state, train_step = make_train_step(spec, float(lr), float(theta), grad_mode)
    device = device_of(params)
    packed = pack(spec, params, device)  # new buffers: the caller's survive the donation

    zero_state = _zero_state(spec, params, device)
    place = lambda X, Y: jax.device_put((X, Y), device)  # noqa: E731
    packed, stats = run_steps(
        train_step, packed, init_opt_state(packed), loader, zero_state, use_random_iter, place
    )
    return unpack(spec, packed), stats


def run_steps(
    train_step: Callable[..., Any],
    params: Params,
    opt_state: Any,
    loader: Iterable[Batch],
    zero_state: Any,
    use_random_iter: bool,
    place: Callable[[Any, Any], tuple[Any, Any]],
) -> tuple[Params, EpochStats]:
    """numpy_ref's epoch loop over a jitted ``train_step``, each minibatch first put where the
    step wants it by ``place(X, Y)`` (one device, or rows split over a mesh)."""

    def step(carry, X, Y, state):
        params, opt_state = carry
        params, opt_state, loss, state, norm = train_step(params, opt_state, *place(X, Y), state)
        return (params, opt_state), loss, state, norm

    (params, _), stats = loops.run_epoch(
        step, (params, opt_state), loader, zero_state, use_random_iter, sync=jax.block_until_ready
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
    loops.check_rates(lr, theta)
    return loops.train_loop(
        lambda p: train_epoch(spec, p, loader, lr, theta, use_random_iter, grad_mode),
        params,
        num_epochs,
        callback,
    )


def evaluate(spec: ModelSpec, params: Params, loader: Iterable[Batch]) -> float:
    """Perplexity of ``params`` on ``loader``'s data, without updating them
    (:func:`numpy_ref.loops.evaluate`, over the jitted ``forward_loss``)."""
    device = device_of(params)

    def loss_step(X, Y, state):
        return forward_loss(spec, params, *jax.device_put((X, Y), device), state)

    return loops.evaluate(loss_step, loader, _zero_state(spec, params, device))
