"""The language model in JAX: embedding gather, a scan over time per layer, output layer, loss.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, G gates of the kind, N = T*B.

For every layer ``l`` (a Python loop over layers, one scan over time each)::

    A_x = (W_x + b)[X]                 layer 0: a row gather (the one-hot product, without one-hot)
    A_x = H^(l-1) W_x + b              layers above: one product over all N rows
    H^(l), state_l = recurrence(A_x, W_h, state_l)       lax.scan over T, see rnn_jax.cells
    logits = H^(L-1) W_hq + b_q        one product, time-major (T, B, V)
    loss = mean over the N positions of -log softmax(logits)[Y]     rnn_jax.layers

**Layout.** The equations are the book's, in rows; the arrays are their transposes, features-major
like the cells' (:mod:`rnn_jax.cells`): a sequence is kept as columns, (K, T, B), whose (K, N)
view has column ``t*B + b`` where the book's (N, K) has row ``t*B + b``, so every product is
``W^T`` (K, D) times a (D, N) matrix, ``A_x^T = W_x^T H^T`` (the form XLA's CPU backend runs
fastest, docs/performance.md). The scans read and write a step's columns in place
(:func:`rnn_jax.xla_tricks.scan_columns`), so no sequence is ever transposed. Only the interface
is in rows: ``X``, ``Y`` (B, T), logits (T, B, V), states (L, B, H).

Gradients come one of two ways (``grad_mode``):

- ``"autodiff"``: ``jax.value_and_grad`` through everything: the layers as ``jnp`` expressions
  and the recurrence as one ``lax.scan`` over the steps (:func:`scan_recurrence`), on the fast
  path's layout and cells but none of its backwards or buffer reuse (the twin that shares
  nothing with it is :mod:`rnn_jax.reference`);
- ``"bptt"``: the same, except that the recurrence is a ``jax.custom_vjp`` whose backward is the
  project's own BPTT (docs/bptt.md, :mod:`rnn_jax.cell_grads`): the derivative factors of every
  step at once from the activations the forward scan saved, a reverse scan of the cells'
  lean ``step_backward`` over them, then the inputs' gradients of every step at once and the
  recurrent weights' gradient as one product over all N rows; and the layers around it, the
  input layer, the dense ones and the loss, with their backward by hand too
  (:mod:`rnn_jax.layers`: what XLA runs fastest and compiles into the fewest kernels).

All functions are pure; ``forward``, ``forward_loss`` and ``loss_and_grads`` are ``jit``-compiled
per (spec, shapes). The passes without a gradient (``forward``, ``forward_loss``, ``token_step``,
a population's evaluation) run the fast path's forward (:data:`EVALUATE`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpy_ref.spec import ModelSpec, Params, State
from rnn_jax import layers
from rnn_jax.cells import CELLS, Cell, cell_for, stack_layer
from rnn_jax.xla_tricks import scan_columns

Array = jax.Array
GRAD_MODES = ("bptt", "autodiff")
EVALUATE = "bptt"  # what the forward passes without a gradient run: the fast path's forward


def check_grad_mode(grad_mode: str) -> str:
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
    return grad_mode


# --- the recurrence, two ways ---------------------------------------------------------------------


def _forward_scan(
    cell: Cell, A_x: Array, W_h: Array, state0: tuple[Array, ...], save: bool = False
) -> tuple[tuple[Array, ...], tuple[Array, ...], tuple[Array, ...], tuple]:
    """The forward scan: A_x (G*H, T, B), state0 of (H, B) arrays -> the last state, every
    step's state after it (H, T, B), and with ``save`` what the backward reads: every step's
    state before it (H, T, B) and its cache (each written by the step: no pass to shift the
    states afterwards); else empty."""
    W = cell.forward_weights(W_h)

    def body(state, inputs):
        state_next, cache = cell.step_forward(W, state, *inputs)
        return state_next, (state_next, state, cache) if save else (state_next, (), ())

    state_T, (states, states_prev, caches) = scan_columns(body, state0, (A_x,))
    return state_T, states, states_prev, caches


def scan_recurrence(
    cell: Cell, A_x: Array, W_h: Array, state0: tuple[Array, ...]
) -> tuple[Array, tuple[Array, ...]]:
    """Run ``cell`` over time, features-major (:mod:`rnn_jax.cells`): the plain reference, one
    ``lax.scan`` over the steps (T, G*H, B), for JAX's autodiff (``grad_mode="autodiff"``).

    Args:
        cell: the cell.
        A_x: (G*H, T, B) input part of every gate, bias included: column ``t*B + b`` of its
            (G*H, N) view is ``x_{b,t} W_x + b``.
        W_h: (H, G*H) stacked recurrent weights.
        state0: ``(h,)`` or ``(h, c)``, each (H, B).

    Returns:
        ``(H_all (H, T, B), state_T)``: every step's hidden state and the last state, (H, B)
        each.
    """
    W = cell.forward_weights(W_h)

    def body(state, a_x):
        state, _ = cell.step_forward(W, state, a_x)
        return state, state[0]

    state_T, H_steps = lax.scan(body, state0, jnp.moveaxis(A_x, 1, 0))
    return jnp.moveaxis(H_steps, 0, 1), state_T


def _make_bptt_recurrence(cell: Cell) -> Any:
    """The function :func:`scan_recurrence` computes, by ``scan_columns``, with the
    hand-written backward as its VJP."""

    @jax.custom_vjp
    def recurrence(A_x, W_h, state0):
        state_T, states, _, _ = _forward_scan(cell, A_x, W_h, state0)
        return states[0], state_T

    def recurrence_fwd(A_x, W_h, state0):
        state_T, states, states_prev, caches = _forward_scan(cell, A_x, W_h, state0, save=True)
        return (states[0], state_T), (W_h, states_prev, states, caches)

    def recurrence_bwd(residuals, cotangents):
        W_h, states_prev, states, caches = residuals
        dH_above, dstate_T = cotangents  # (H, T, B) from above; the last state's gradient
        W_back = cell.backward_weights(W_h)
        factors = cell.backward_factors(states_prev, states, caches)  # every step's, at once

        def body(dstate, inputs):
            dh_above, *factors_t = inputs
            dh_next = dh_above + dstate[0]  # (B1): h feeds the layer above and step t+1
            return cell.step_backward(W_back, (dh_next, *dstate[1:]), tuple(factors_t))

        inputs = (dH_above, *factors)  # da over the last factor, or into a new array
        last = len(factors) if cell.da_over_factor else len(inputs)
        dstate0, dsteps = scan_columns(body, tuple(dstate_T), inputs, reverse=True, writable=last)
        dA_x, dA_rec = cell.input_grads(dsteps, factors)  # every step's, at once
        dW_h = cell.weight_grad(states_prev[0], caches, dA_rec)  # one product over all T*B rows
        return dA_x, dW_h, dstate0

    recurrence.defvjp(recurrence_fwd, recurrence_bwd)
    return recurrence


_BPTT_RECURRENCES = {name: _make_bptt_recurrence(cell) for name, cell in CELLS.items()}


def _recurrence(spec: ModelSpec, grad_mode: str) -> Any:
    cell = cell_for(spec)
    if grad_mode == "bptt":
        return _BPTT_RECURRENCES[cell.name]
    return partial(scan_recurrence, cell)


# --- the model ---------------------------------------------------------------------------------


def apply(
    spec: ModelSpec, params: Params, X: Array, state: State, grad_mode: str = "autodiff"
) -> tuple[Array, State]:
    """The un-jitted forward pass, for other jit regions: ``(logits (T, B, V), state)``.

    Args:
        spec: the model.
        params: the shared parameter dict of JAX arrays (or ``rnn_jax.training.pack``'s form).
        X: (B, T) int token indices.
        state: tuple of ``spec.num_states`` arrays (L, B, H).
        grad_mode: which recurrence and layers a gradient of it goes through (``GRAD_MODES``).
    """
    logits, state = _apply_columns(spec, params, X, state, grad_mode)
    return jnp.transpose(logits, (1, 2, 0)), state


def _apply_columns(
    spec: ModelSpec, params: Params, X: Array, state: State, grad_mode: str
) -> tuple[Array, State]:
    """:func:`apply` with the logits as columns, (V, T, B) (the module docstring's layout)."""
    recurrence = _recurrence(spec, grad_mode)
    fast = grad_mode == "bptt"  # the plain reference stays plain: grad_mode="autodiff"
    linear = layers.dense if fast else layers.dense_plain
    H_all = None
    first_states = tuple(jnp.swapaxes(s, 1, 2) for s in state)  # (L, H, B): one transpose each
    last_states = []
    for layer_index, layer in enumerate(params["layers"]):
        W_x, W_h, b = stack_layer(spec, layer)
        if layer_index == 0:
            gather = layers.gather_columns if fast else layers.gather_columns_plain
            A_x = gather(W_x, b, X.T)  # (G*H, T, B): row X[b, t] of W_x plus b, as a column
        else:
            A_x = linear(H_all, W_x, b)  # (G*H, T, B)
        state0 = tuple(s[layer_index] for s in first_states)  # (H, B)
        H_all, state_l = recurrence(A_x, W_h, state0)
        last_states.append(state_l)
    stacked = (jnp.stack([s[k] for s in last_states]) for k in range(spec.num_states))
    new_state = tuple(jnp.swapaxes(s, 1, 2) for s in stacked)  # (L, B, H)
    return linear(H_all, params["W_hq"], params["b_q"]), new_state  # (V, T, B)


def mean_loss(
    params: Params, spec: ModelSpec, X: Array, Y: Array, state: State, grad_mode: str
) -> tuple[Array, State]:
    """The un-jitted mean cross-entropy over the B*T positions: ``(loss (), state)``."""
    logits, state = _apply_columns(spec, params, X, state, grad_mode)
    loss = layers.cross_entropy if grad_mode == "bptt" else layers.cross_entropy_plain
    return loss(logits, Y.T), state


def loss_and_grads_fn(spec: ModelSpec, grad_mode: str = "bptt") -> Any:
    """The un-jitted ``(params, X, Y, state) -> (loss, grads, state)``, for other jit regions.

    The returned state carries no gradient (``lax.stop_gradient``): the next minibatch of a
    sequential epoch starts from its value only (truncated BPTT).
    """
    check_grad_mode(grad_mode)
    value_and_grad = jax.value_and_grad(mean_loss, has_aux=True)

    def fn(params: Params, X: Array, Y: Array, state: State) -> tuple[Array, Params, State]:
        (loss, new_state), grads = value_and_grad(params, spec, X, Y, state, grad_mode)
        return loss, grads, lax.stop_gradient(new_state)

    return fn


@partial(jax.jit, static_argnums=(0,))
def _forward_jit(spec: ModelSpec, params: Params, X: Array, state: State) -> tuple[Array, State]:
    return apply(spec, params, X, state, EVALUATE)


@partial(jax.jit, static_argnums=(0,))
def token_step(spec: ModelSpec, params: Params, token: Array, state: State) -> tuple[Array, State]:
    """One step of batch 1 on one token (generation): ``(logits (V,), state)``."""
    logits, state = apply(spec, params, jnp.reshape(token, (1, 1)), state, EVALUATE)
    return logits[0, 0], state


@partial(jax.jit, static_argnums=(0, 5))
def _loss_and_grads_jit(
    spec: ModelSpec, params: Params, X: Array, Y: Array, state: State, grad_mode: str
) -> tuple[Array, Params, State]:
    return loss_and_grads_fn(spec, grad_mode)(params, X, Y, state)


@partial(jax.jit, static_argnums=(0,))
def _loss_jit(
    spec: ModelSpec, params: Params, X: Array, Y: Array, state: State
) -> tuple[Array, State]:
    return mean_loss(params, spec, X, Y, state, EVALUATE)


def forward_loss(
    spec: ModelSpec, params: Params, X: Any, Y: Any, state: State
) -> tuple[Array, State]:
    """Mean cross-entropy over the B*T positions, without gradient: ``(loss (), state)``."""
    return _loss_jit(spec, params, jnp.asarray(X), jnp.asarray(Y), tuple(state))


def forward(spec: ModelSpec, params: Params, X: Any, state: State) -> tuple[Array, State]:
    """The model on one minibatch.

    Args:
        spec: the model.
        params: the shared parameter dict of JAX arrays.
        X: (B, T) int token indices.
        state: tuple of ``spec.num_states`` arrays (L, B, H).

    Returns:
        ``(logits (T, B, V), state)``: time-major logits, row ``t*B + b`` of their (N, V) view
        pairs with ``Y[b, t]``; the state after the last step.
    """
    return _forward_jit(spec, params, jnp.asarray(X), tuple(state))


def loss_and_grads(
    spec: ModelSpec, params: Params, X: Any, Y: Any, state: State, grad_mode: str = "bptt"
) -> tuple[Array, Params, State]:
    """Mean cross-entropy over the B*T positions and its gradient.

    Args:
        spec: the model.
        params: the shared parameter dict of JAX arrays.
        X: (B, T) int inputs.
        Y: (B, T) int targets, ``Y[b, t]`` follows ``X[b, t]``.
        state: tuple of (L, B, H) arrays, the initial state (no gradient flows into it).
        grad_mode: ``"bptt"`` (the hand-written backward) or ``"autodiff"``.

    Returns:
        ``(loss (), grads, state)``: grads in the layout of ``params``; the state after the
        last step, without gradient.
    """
    check_grad_mode(grad_mode)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    return _loss_and_grads_jit(spec, params, X, Y, tuple(state), grad_mode)
