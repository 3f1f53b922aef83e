"""The backward of each cell on gate-stacked weights, split for a fast reverse scan.

Letters: B batch, H hidden, G gates of the kind, T steps, N = T*B rows of a whole sequence.
Equation numbers are docs/bptt.md's; the forward steps and the gate layout are in
:mod:`rnn_jax.cells`, features-major like them: a state (H, B), a step's gates (G*H, B), every
step's (G*H, T, B); the equations are written in the book's rows.

A step's backward is linear in the gradient that reaches its output state: the nonlinearities
enter only through their derivatives at the forward's values (``tanh' = 1 - tanh^2``, ``sigmoid' =
s (1 - s)``) and through the gates that multiply. These *factors* depend only on what the forward
saved, so they are formed for all T steps at once, as a few large elementwise operations before the
reverse scan; a step of the scan is then a few multiplications and the one recurrent product
(docs/performance.md measures the difference). Per cell:

- ``backward_factors(states_prev, states, caches) -> factors``: every step's factors, a tuple of
  (K, T, B) arrays; ``states_prev``, ``states``: tuples of (H, T, B), the state before and after
  every step; ``caches``: the forward steps' caches, stacked over T.
- ``step_backward(W, dstate_next, factors_t) -> (dstate_prev, dstep)``: one step of the reverse
  scan. ``dstate_next`` is the gradient reaching ``state_next`` by every path (``dh_next`` the
  sum of what comes from above and from step t+1, (B1), formed by the scan's body); ``dstep`` is
  what the inputs' gradients follow from elementwise: ``(da,)`` for rnn and lstm, ``(dh,)`` for
  the "after" GRU, ``(dh, drh)`` for the "before" GRU.
- ``input_grads(dsteps, factors) -> (dA_x, dA_rec)``: for all steps at once, the gradient of
  ``a_x`` (G*H, T, B), to (I1') or (I2'), and that of the recurrent product's output (the same
  array but for the "after" GRU, whose candidate product is gated by R), for (B2).
- ``weight_grad(H_prev_all, caches, dA_rec) -> dW_h`` (H, G*H): (B2) as one product over all N
  rows instead of a sum of T products.
- ``backward_weights(W_h)``: what ``step_backward`` takes instead of the stacked ``W_h`` (itself:
  ``dh_prev^T = W_h da^T``; the "before" GRU's two blocks), formed once before the scan.
- ``da_over_factor`` (a flag in the table): ``step_backward`` hands out its last factor times
  the gradient reaching the step, and nothing else in the step reads that factor (rnn, lstm),
  so the reverse scan writes ``da`` over that factor's columns instead of into a new array of
  zeros (``rnn_jax.models.scan_columns``). The GRUs hand out ``dh``, which the step reads
  again for its other paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
State = tuple[Array, ...]


FEATURES = 0  # the axis of the features in a state, a step, a sequence (rnn_jax.cells)


def columns(a: Array) -> Array:
    """(K, T, B) -> (K, N), column ``t*B + b``: every step's columns as one matrix (a view)."""
    return a.reshape(a.shape[FEATURES], -1)


def sigmoid_grad(s: Array) -> Array:
    """d sigmoid(a) / da written with s = sigmoid(a)."""
    return s * (1 - s)


def tanh_grad(t: Array) -> Array:
    """d tanh(a) / da written with t = tanh(a)."""
    return 1 - t * t


def same(W_h: Array) -> Array:
    return W_h


def transposed(W_h: Array) -> Array:
    """``W_h^T`` written out (:func:`materialized`): a product whose left operand is a transpose
    is the slow one (below)."""
    return materialized(W_h.T)


def materialized(a: Array) -> Array:
    """``a`` written out as an array of its own (``lax.optimization_barrier``), so that XLA does
    not fold a transpose into the product that reads it: XLA's CPU backend runs a product whose
    left operand is transposed in a generic path instead of YNNPACK, for (B2), (H, N) x (N, G*H),
    at half the rate (``python -m tools.bench_probes products``, docs/performance.md)."""
    return lax.optimization_barrier(a)


def split_zr_h(W_h: Array) -> tuple[Array, Array]:
    """(H, 3H) -> ``W_hzr`` (H, 2H), ``W_hh`` (H, H): the "before" GRU multiplies them apart."""
    H = W_h.shape[0]
    return W_h[:, : 2 * H], W_h[:, 2 * H :]


def split_zr_h_transposed(W_h: Array) -> tuple[Array, Array]:
    """(H, 3H) -> ``W_hzr^T`` (2H, H), ``W_hh^T`` (H, H), written out."""
    return tuple(transposed(W) for W in split_zr_h(W_h))


def _tile(a: Array, parts: int) -> Array:
    """(H, ...) -> (parts*H, ...): ``a`` stacked ``parts`` times along the features."""
    return jnp.concatenate([a] * parts, axis=FEATURES)


def stack_gates(parts: list[Array]) -> Array:
    """Gates (or their gradients) stacked along the features: (H, ...) each -> (k*H, ...)."""
    return jnp.concatenate(parts, axis=FEATURES)


def weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2) ``dW_h = sum_t h_{t-1}^T da_rec_t`` as one product, (H, G*H), from (H, T, B) and
    (G*H, T, B): (H, N) x (G*H, N)^T."""
    return columns(H_prev_all) @ columns(dA_rec).T


# --- vanilla RNN ---------------------------------------------------------------------------------


def rnn_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple[Array]:
    """``(1 - H_t^2,)`` (H, T, B): tanh' at every step (R1')."""
    return (tanh_grad(states[0]),)


def rnn_step_backward(W_hh: Array, dstate_next: State, factors_t: tuple) -> tuple[State, tuple]:
    """(R1'): ``da = dh_next * tanh'``, ``dh_prev = da W_hh^T``; hands out ``(da,)`` (H, B)."""
    (dh_next,), (tanh_prime,) = dstate_next, factors_t
    da = dh_next * tanh_prime  # (R1') through tanh
    return (W_hh @ da,), (da,)


def same_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """rnn, lstm: the step handed out ``da`` itself, the gradient of ``a_x`` and of the product."""
    (dA,) = dsteps
    return dA, dA


# --- GRU: (G4') and (G3') are shared, the reset gate's place differs -----------------------------


def _gru_common_factors(gates: Array, h_prev: Array) -> tuple[Array, Array, Array, Array]:
    """``z``, ``r`` and the factors of dh_next in ``da_z`` (G4', G1') and ``da_h`` (G4', G3')."""
    z, r, h_tilde = jnp.split(gates, 3, axis=FEATURES)
    f_z = sigmoid_grad(z) * (h_prev - h_tilde)  # da_z = dh_next * f_z
    f_h = (1 - z) * tanh_grad(h_tilde)  # da_h = dh_next * f_h
    return z, r, f_z, f_h


def gru_before_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(z, r, f_z, f_h, g_r)`` (H, T, B) each: ``da_z = dh f_z``, ``da_h = dh f_h``, ``da_r =
    drh g_r`` with ``drh = da_h W_hh^T`` (G3b', G2')."""
    (h_prev,), (gates,) = states_prev, caches
    z, r, f_z, f_h = _gru_common_factors(gates, h_prev)
    return z, r, f_z, f_h, h_prev * sigmoid_grad(r)


def gru_before_step_backward(
    W_h: tuple[Array, Array], dstate_next: State, factors_t: tuple
) -> tuple[State, tuple]:
    """(G4', G3', G3b', G2', G1'): two products, since ``r * h_prev`` enters ``W_hh`` after
    ``h_prev`` entered ``W_hz, W_hr``. Hands out ``(dh, drh)`` (H, B) each."""
    W_hzr, W_hh = W_h
    (dh,), (z, r, f_z, f_h, g_r) = dstate_next, factors_t
    drh = W_hh @ (dh * f_h)  # (G3b') through rh W_hh, rh = r * h_prev
    da_zr = stack_gates([dh * f_z, drh * g_r])  # (G1', G2')
    dh_prev = dh * z + drh * r + W_hzr @ da_zr  # the direct path, through rh, through z and r
    return (dh_prev,), (dh, drh)


def gru_before_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """``[da_z | da_r | da_h]`` (3H, T, B), both the input's and the products' gradient."""
    (dH, dRH), (_, _, f_z, f_h, g_r) = dsteps, factors
    dA = stack_gates([dH * f_z, dRH * g_r, dH * f_h])
    return dA, dA


def gru_before_weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2) for the "before" GRU: ``W_hz, W_hr`` read ``h_prev``, ``W_hh`` reads ``r * h_prev``.

    Args:
        H_prev_all: (H, T, B), ``h_prev`` of every step.
        caches: ``(gates,)``, gates (3H, T, B).
        dA_rec: (3H, T, B).

    Returns:
        (H, 3H), ``[dW_hz | dW_hr | dW_hh]``.
    """
    (gates,) = caches
    H = H_prev_all.shape[FEATURES]
    dW_hzr = columns(H_prev_all) @ columns(dA_rec[: 2 * H]).T
    rh = gates[H : 2 * H] * H_prev_all  # the input of W_hh is r * h_prev
    dW_hh = columns(rh) @ columns(dA_rec[2 * H :]).T
    return jnp.concatenate([dW_hzr, dW_hh], axis=-1)


def gru_after_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(z, f_h, f_rec)``: ``da_h = dh f_h`` (H, T, B) and ``da_rec = [dh dh dh] f_rec``
    (3H, T, B), the gradient of ``h_prev W_h``: ``[da_z | da_r | r da_h]`` (G3a', G2', G1')."""
    (h_prev,), (gates, hW) = states_prev, caches
    z, r, f_z, f_h = _gru_common_factors(gates, h_prev)
    f_rec = stack_gates([f_z, f_h * hW * sigmoid_grad(r), f_h * r])
    return z, f_h, f_rec


def gru_after_step_backward(W_h: Array, dstate_next: State, factors_t: tuple) -> tuple:
    """(G4', G3', G3a', G2', G1'): one product for the three recurrent paths. Hands out
    ``(dh,)`` (H, B)."""
    (dh,), (z, _, f_rec) = dstate_next, factors_t
    da_rec = _tile(dh, 3) * f_rec  # (3H, B) the gradient of h_prev W_h
    return (dh * z + W_h @ da_rec,), (dh,)  # the direct path and the three through W_h


def gru_after_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """``da_x = [da_z | da_r | da_h]`` and ``da_rec = [da_z | da_r | r da_h]`` (3H, T, B)."""
    (dH,), (_, f_h, f_rec) = dsteps, factors
    dA_rec = _tile(dH, 3) * f_rec
    H = dH.shape[FEATURES]
    return stack_gates([dA_rec[: 2 * H], dH * f_h]), dA_rec


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(k, f, p)``: ``dc = dc_next + dh k`` (L6'), ``dc_prev = dc f`` (L5') (H, T, B), and
    ``da = [dc dc dh dc] p`` (4H, T, B) (L5', L6', L1'-L4')."""
    (_, c_prev), (_, c_next), (gates,) = states_prev, states, caches
    i, f, o, c_tilde = jnp.split(gates, 4, axis=FEATURES)
    tanh_c = jnp.tanh(c_next)
    p = stack_gates(
        [
            c_tilde * sigmoid_grad(i),  # da_i = dc * c_tilde * i (1 - i)
            c_prev * sigmoid_grad(f),  # da_f = dc * c_prev * f (1 - f)
            tanh_c * sigmoid_grad(o),  # da_o = dh * tanh(c) * o (1 - o)
            i * tanh_grad(c_tilde),  # da_c = dc * i * (1 - c_tilde^2)
        ]
    )
    return o * tanh_grad(tanh_c), f, p


def lstm_step_backward(W_h: Array, dstate_next: State, factors_t: tuple) -> tuple:
    """(L6', L5', L1'-L4'): hands out ``(da,)`` (4H, B), the gates' pre-activations' gradient."""
    (dh, dc_next), (k, f, p) = dstate_next, factors_t
    dc = dc_next + dh * k  # (L6') both paths into c_next
    da = stack_gates([dc, dc, dh, dc]) * p  # (L5', L6', L1'-L4')
    return (W_h @ da, dc * f), (da,)
