"""The plain JAX twin of the fast path: the book's equations in rows, ``lax.scan``, ``jax.grad``.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers. Equation numbers are docs/bptt.md's.

Everything here is written as the book writes it, on the shared parameter dict (``W_xh (D, H)``,
``W_hh (H, H)``, ``b_h (H,)``, ... per layer, then ``W_hq (H, V)``, ``b_q (V,)``), with a row per
example: a step maps ``x`` (B, D) and the state (B, H) to the next state::

    rnn     H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)                              (R1)
    gru     Z = sigmoid(X_t W_xz + H_{t-1} W_hz + b_z)                             (G1)
            R = sigmoid(X_t W_xr + H_{t-1} W_hr + b_r)                             (G2)
            H~ = tanh(X_t W_xh + (R * H_{t-1}) W_hh + b_h)    reset "before"       (G3b)
            H~ = tanh(X_t W_xh + b_h + R * (H_{t-1} W_hh))    reset "after"        (G3a)
            H_t = Z * H_{t-1} + (1 - Z) * H~                                       (G4)
    lstm    I, F, O = sigmoid(X_t W_x{i,f,o} + H_{t-1} W_h{i,f,o} + b_{i,f,o})     (L1-L3)
            C~ = tanh(X_t W_xc + H_{t-1} W_hc + b_c)                               (L4)
            C_t = F * C_{t-1} + I * C~,  H_t = O * tanh(C_t)                       (L5, L6)

A layer is one ``lax.scan`` of its step over time; a deep model a Python loop over layers, the
first reading the one-hot tokens; the output layer is ``H W_hq + b_q``; the loss the mean
cross-entropy over the B*T positions; gradients are ``jax.value_and_grad``'s. A training step
clips the gradients to the global norm ``theta`` and takes a plain SGD step, as the book does.

It shares nothing with the fast path (``rnn_jax.models``, ``rnn_jax.cells``,
``rnn_jax.cell_grads``, ``rnn_jax.layers``, ``rnn_jax.xla_tricks``): no stacked gates, no
columns, no custom VJP, no buffer reuse. It is what those are tested against, piece by piece,
in float64 (``tests/test_reference.py``); it is not tuned for speed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from numpy_ref.cells import cell_for
from numpy_ref.spec import ModelSpec, Params, State

Array = jax.Array
Layer = dict[str, Array]
Step = Callable[[Layer, State, Array], State]


# --- one time step of each cell ------------------------------------------------------------------


def rnn_step(p: Layer, state: State, x: Array) -> State:
    """(R1). ``p``: ``W_xh`` (D, H), ``W_hh`` (H, H), ``b_h`` (H,); ``state``: ``(h,)`` (B, H);
    ``x`` (B, D). Returns ``(h_next,)`` (B, H)."""
    (h,) = state
    return (jnp.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"]),)


def gru_step(p: Layer, state: State, x: Array, reset: str = "before") -> State:
    """(G1-G4). ``p``: ``W_x{z,r,h}`` (D, H), ``W_h{z,r,h}`` (H, H), ``b_{z,r,h}`` (H,);
    ``state``: ``(h,)`` (B, H); ``x`` (B, D); ``reset``: ``"before"`` the recurrent product (the
    book's scratch GRU) or ``"after"`` it (PyTorch, cuDNN). Returns ``(h_next,)`` (B, H)."""
    (h,) = state
    z = jax.nn.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])  # (G1)
    r = jax.nn.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])  # (G2)
    if reset == "before":
        h_tilde = jnp.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])  # (G3b)
    else:
        h_tilde = jnp.tanh(x @ p["W_xh"] + p["b_h"] + r * (h @ p["W_hh"]))  # (G3a)
    return (z * h + (1 - z) * h_tilde,)  # (G4)


def lstm_step(p: Layer, state: State, x: Array) -> State:
    """(L1-L6). ``p``: ``W_x{i,f,o,c}`` (D, H), ``W_h{i,f,o,c}`` (H, H), ``b_{i,f,o,c}`` (H,);
    ``state``: ``(h, c)`` (B, H) each; ``x`` (B, D). Returns ``(h_next, c_next)`` (B, H) each."""
    h, c = state
    i = jax.nn.sigmoid(x @ p["W_xi"] + h @ p["W_hi"] + p["b_i"])  # (L1)
    f = jax.nn.sigmoid(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])  # (L2)
    o = jax.nn.sigmoid(x @ p["W_xo"] + h @ p["W_ho"] + p["b_o"])  # (L3)
    c_tilde = jnp.tanh(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"])  # (L4)
    c = f * c + i * c_tilde  # (L5)
    return o * jnp.tanh(c), c  # (L6)


# Under the names of the cell table (numpy_ref.cells.CELLS), in its order.
STEPS: dict[str, Step] = {
    "rnn": rnn_step,
    "gru_before": partial(gru_step, reset="before"),
    "gru_after": partial(gru_step, reset="after"),
    "lstm": lstm_step,
}


def step_for(spec: ModelSpec) -> Step:
    """The step of ``spec``'s cell (``numpy_ref.cells.cell_for``)."""
    return STEPS[cell_for(spec).name]


# --- the model -----------------------------------------------------------------------------------


def layer_forward(step: Step, p: Layer, inputs: Array, state: State) -> tuple[Array, State]:
    """One layer over time: ``inputs`` (T, B, D), ``state`` a tuple of (B, H) -> every step's
    hidden state (T, B, H) and the state after the last step."""

    def body(state: State, x: Array) -> tuple[State, Array]:
        state = step(p, state, x)
        return state, state[0]

    state, H_all = lax.scan(body, state, inputs)
    return H_all, state


def forward(spec: ModelSpec, params: Params, X: Array, state: State) -> tuple[Array, State]:
    """The model on one minibatch, time-major as the book.

    Args:
        spec: the model.
        params: the shared parameter dict.
        X: (B, T) int token indices.
        state: tuple of ``spec.num_states`` arrays (L, B, H).

    Returns:
        ``(logits (T, B, V), state)``: ``logits[t, b]`` predicts ``Y[b, t]``; the state after
        the last step, (L, B, H) each.
    """
    step = step_for(spec)
    inputs = jax.nn.one_hot(X.T, spec.vocab_size, dtype=params["W_hq"].dtype)  # (T, B, V)
    last_states = []
    for layer_index, p in enumerate(params["layers"]):
        state_l = tuple(s[layer_index] for s in state)  # (B, H) each
        inputs, state_l = layer_forward(step, p, inputs, state_l)  # inputs now (T, B, H)
        last_states.append(state_l)
    logits = inputs @ params["W_hq"] + params["b_q"]  # (T, B, V)
    new_state = tuple(jnp.stack(s) for s in zip(*last_states, strict=True))
    return logits, new_state


def mean_loss(
    params: Params, spec: ModelSpec, X: Array, Y: Array, state: State
) -> tuple[Array, State]:
    """The mean over the B*T positions of ``-log softmax(logits)[y]``: ``(loss (), state)``;
    ``Y`` (B, T) int, ``Y[b, t]`` follows ``X[b, t]``."""
    logits, state = forward(spec, params, X, state)
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # (T, B, V)
    return -jnp.mean(jnp.take_along_axis(log_probs, Y.T[..., None], axis=-1)), state


def loss_and_grads(
    spec: ModelSpec, params: Params, X: Array, Y: Array, state: State
) -> tuple[Array, Params, State]:
    """``(loss (), grads, state)`` by ``jax.value_and_grad``; grads in the layout of ``params``,
    the state after the last step without its gradient (truncated BPTT)."""
    value_and_grad = jax.value_and_grad(mean_loss, has_aux=True)
    (loss, state), grads = value_and_grad(params, spec, X, Y, state)
    return loss, grads, lax.stop_gradient(state)


def clip_by_global_norm(grads: Params, theta: float) -> tuple[Params, Array]:
    """The book's ``grad_clipping``: every gradient times ``min(1, theta / ||g||)``, ``||g||``
    the L2 norm of all of them together (Pascanu et al. 2013). Returns the clipped gradients
    and ``||g||``."""
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    scale = jnp.minimum(1.0, theta / norm)
    return jax.tree.map(lambda g: g * scale, grads), norm


def sgd(params: Params, grads: Params, lr: float) -> Params:
    """Plain SGD: ``p - lr * g`` for every parameter."""
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def train_step(
    spec: ModelSpec,
    params: Params,
    X: Array,
    Y: Array,
    state: State,
    lr: float,
    theta: float,
) -> tuple[Params, Array, State, Array]:
    """One training step as the book's: loss and gradients, clipping, SGD.

    Returns:
        ``(params, loss (), state, grad_norm ())``: the updated parameters, the minibatch's loss,
        the state after it (no gradient), the gradients' global norm before clipping.
    """
    loss, grads, state = loss_and_grads(spec, params, X, Y, state)
    grads, norm = clip_by_global_norm(grads, theta)
    return sgd(params, grads, lr), loss, state, norm
