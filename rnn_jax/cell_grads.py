"""The backward of each cell on gate-stacked weights, split for a fast reverse scan.

Letters: B batch, H hidden, G gates of the kind, T steps, N = T*B rows of a whole sequence.
Equation numbers are docs/bptt.md's; the forward steps and the gate layout are in
:mod:`rnn_jax.cells`.

A step's backward is linear in the gradient that reaches its output state: the nonlinearities
enter only through their derivatives at the forward's values (``tanh' = 1 - tanh^2``, ``sigmoid' =
s (1 - s)``) and through the gates that multiply. These *factors* depend only on what the forward
saved, so they are formed for all T steps at once, as a few large elementwise operations before the
reverse scan; a step of the scan is then a few multiplications and the one recurrent product
(docs/performance.md measures the difference). Per cell:

- ``backward_factors(states_prev, states, caches) -> factors``: every step's factors, a tuple of
  (T, B, K) arrays; ``states_prev``, ``states``: tuples of (T, B, H), the state before and after
  every step; ``caches``: the forward steps' caches, stacked over T.
- ``step_backward(W_T, dstate_next, factors_t) -> (dstate_prev, dstep)``: one step of the reverse
  scan. ``dstate_next`` is the gradient reaching ``state_next`` by every path (``dh_next`` the
  sum of what comes from above and from step t+1, (B1), formed by the scan's body); ``dstep`` is
  what the inputs' gradients follow from elementwise: ``(da,)`` for rnn and lstm, ``(dh,)`` for
  the "after" GRU, ``(dh, drh)`` for the "before" GRU.
- ``input_grads(dsteps, factors) -> (dA_x, dA_rec)``: for all steps at once, the gradient of
  ``a_x`` (T, B, G*H), to (I1') or (I2'), and that of the recurrent product's output (the same
  array but for the "after" GRU, whose candidate product is gated by R), for (B2).
- ``weight_grad(H_prev_all, caches, dA_rec) -> dW_h`` (H, G*H): (B2) as one product over all N
  rows instead of a sum of T products.
- ``backward_weights(W_h)``: what ``step_backward`` takes instead of the stacked ``W_h`` (its
  transpose; the "before" GRU's two blocks), formed once before the scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
State = tuple[Array, ...]


def rows(a: Array) -> Array:
    """(T, B, K) -> (N, K): every step's rows as one matrix."""
    return a.reshape(-1, a.shape[-1])


def sigmoid_grad(s: Array) -> Array:
    """d sigmoid(a) / da written with s = sigmoid(a)."""
    return s * (1 - s)


def tanh_grad(t: Array) -> Array:
    """d tanh(a) / da written with t = tanh(a)."""
    return 1 - t * t


def transposed(W_h: Array) -> Array:
    return W_h.T


def materialized(a: Array) -> Array:
    """``a`` written out as an array of its own (``lax.optimization_barrier``), so that XLA does
    not fold a transpose into the product that reads it: XLA's CPU backend runs a product whose
    left operand is transposed in a generic path instead of YNNPACK, for (B2), (H, N) x (N, G*H),
    at half the rate (``python -m experiments.bench_probes products``, docs/performance.md)."""
    return lax.optimization_barrier(a)


def _tile(a: Array, parts: int) -> Array:
    """(..., H) -> (..., parts*H): ``a`` side by side ``parts`` times."""
    return jnp.concatenate([a] * parts, axis=-1)


def weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2) ``dW_h = sum_t h_{t-1}^T da_rec_t`` as one product, (H, G*H), from (T, B, H) and
    (T, B, G*H)."""
    return materialized(rows(H_prev_all).T) @ rows(dA_rec)


# --- vanilla RNN ---------------------------------------------------------------------------------


def rnn_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple[Array]:
    """``(1 - H_t^2,)`` (T, B, H): tanh' at every step (R1')."""
    return (tanh_grad(states[0]),)


def rnn_step_backward(W_hh_T: Array, dstate_next: State, factors_t: tuple) -> tuple[State, tuple]:
    """(R1'): ``da = dh_next * tanh'``, ``dh_prev = da W_hh^T``; hands out ``(da,)`` (B, H)."""
    (dh_next,), (tanh_prime,) = dstate_next, factors_t
    da = dh_next * tanh_prime  # (R1') through tanh
    return (da @ W_hh_T,), (da,)


def same_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """rnn, lstm: the step handed out ``da`` itself, the gradient of ``a_x`` and of the product."""
    (dA,) = dsteps
    return dA, dA


# --- GRU: (G4') and (G3') are shared, the reset gate's place differs -----------------------------


def _gru_common_factors(gates: Array, h_prev: Array) -> tuple[Array, Array, Array, Array]:
    """``z``, ``r`` and the factors of dh_next in ``da_z`` (G4', G1') and ``da_h`` (G4', G3')."""
    z, r, h_tilde = jnp.split(gates, 3, axis=-1)
    f_z = sigmoid_grad(z) * (h_prev - h_tilde)  # da_z = dh_next * f_z
    f_h = (1 - z) * tanh_grad(h_tilde)  # da_h = dh_next * f_h
    return z, r, f_z, f_h


def gru_before_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(z, r, f_z, f_h, g_r)`` (T, B, H) each: ``da_z = dh f_z``, ``da_h = dh f_h``, ``da_r =
    drh g_r`` with ``drh = da_h W_hh^T`` (G3b', G2')."""
    (h_prev,), (gates,) = states_prev, caches
    z, r, f_z, f_h = _gru_common_factors(gates, h_prev)
    return z, r, f_z, f_h, h_prev * sigmoid_grad(r)


def gru_before_step_backward(
    W_h_T: tuple[Array, Array], dstate_next: State, factors_t: tuple
) -> tuple[State, tuple]:
    """(G4', G3', G3b', G2', G1'): two products, since ``r * h_prev`` enters ``W_hh`` after
    ``h_prev`` entered ``W_hz, W_hr``. Hands out ``(dh, drh)`` (B, H) each."""
    W_hzr_T, W_hh_T = W_h_T
    (dh,), (z, r, f_z, f_h, g_r) = dstate_next, factors_t
    drh = (dh * f_h) @ W_hh_T  # (G3b') through rh W_hh, rh = r * h_prev
    da_zr = jnp.concatenate([dh * f_z, drh * g_r], axis=-1)  # (G1', G2')
    dh_prev = dh * z + drh * r + da_zr @ W_hzr_T  # the direct path, through rh, through z and r
    return (dh_prev,), (dh, drh)


def gru_before_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """``[da_z | da_r | da_h]`` (T, B, 3H), both the input's and the products' gradient."""
    (dH, dRH), (_, _, f_z, f_h, g_r) = dsteps, factors
    dA = jnp.concatenate([dH * f_z, dRH * g_r, dH * f_h], axis=-1)
    return dA, dA


def gru_before_weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2) for the "before" GRU: ``W_hz, W_hr`` read ``h_prev``, ``W_hh`` reads ``r * h_prev``.

    Args:
        H_prev_all: (T, B, H), ``h_prev`` of every step.
        caches: ``(gates,)``, gates (T, B, 3H).
        dA_rec: (T, B, 3H).

    Returns:
        (H, 3H), ``[dW_hz | dW_hr | dW_hh]``.
    """
    (gates,) = caches
    H = H_prev_all.shape[-1]
    dW_hzr = materialized(rows(H_prev_all).T) @ rows(dA_rec[..., : 2 * H])
    rh = gates[..., H : 2 * H] * H_prev_all  # the input of W_hh is r * h_prev
    dW_hh = materialized(rows(rh).T) @ rows(dA_rec[..., 2 * H :])
    return jnp.concatenate([dW_hzr, dW_hh], axis=-1)


def split_zr_h_transposed(W_h: Array) -> tuple[Array, Array]:
    """(H, 3H) -> ``W_hzr^T`` (2H, H), ``W_hh^T`` (H, H)."""
    H = W_h.shape[0]
    return W_h[:, : 2 * H].T, W_h[:, 2 * H :].T


def gru_after_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(z, f_h, f_rec)``: ``da_h = dh f_h`` (T, B, H) and ``da_rec = [dh dh dh] f_rec``
    (T, B, 3H), the gradient of ``h_prev W_h``: ``[da_z | da_r | r da_h]`` (G3a', G2', G1')."""
    (h_prev,), (gates, hW) = states_prev, caches
    z, r, f_z, f_h = _gru_common_factors(gates, h_prev)
    f_rec = jnp.concatenate([f_z, f_h * hW * sigmoid_grad(r), f_h * r], axis=-1)
    return z, f_h, f_rec


def gru_after_step_backward(W_h_T: Array, dstate_next: State, factors_t: tuple) -> tuple:
    """(G4', G3', G3a', G2', G1'): one product for the three recurrent paths. Hands out
    ``(dh,)`` (B, H)."""
    (dh,), (z, _, f_rec) = dstate_next, factors_t
    da_rec = _tile(dh, 3) * f_rec  # (B, 3H) the gradient of h_prev W_h
    return (dh * z + da_rec @ W_h_T,), (dh,)  # the direct path and the three through W_h


def gru_after_input_grads(dsteps: tuple, factors: tuple) -> tuple[Array, Array]:
    """``da_x = [da_z | da_r | da_h]`` and ``da_rec = [da_z | da_r | r da_h]`` (T, B, 3H)."""
    (dH,), (_, f_h, f_rec) = dsteps, factors
    dA_rec = _tile(dH, 3) * f_rec
    H = dH.shape[-1]
    return jnp.concatenate([dA_rec[..., : 2 * H], dH * f_h], axis=-1), dA_rec


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_backward_factors(states_prev: State, states: State, caches: tuple) -> tuple:
    """``(k, f, p)``: ``dc = dc_next + dh k`` (L6'), ``dc_prev = dc f`` (L5') (T, B, H), and
    ``da = [dc dc dh dc] p`` (T, B, 4H) (L5', L6', L1'-L4')."""
    (_, c_prev), (_, c_next), (gates,) = states_prev, states, caches
    i, f, o, c_tilde = jnp.split(gates, 4, axis=-1)
    tanh_c = jnp.tanh(c_next)
    p = jnp.concatenate(
        [
            c_tilde * sigmoid_grad(i),  # da_i = dc * c_tilde * i (1 - i)
            c_prev * sigmoid_grad(f),  # da_f = dc * c_prev * f (1 - f)
            tanh_c * sigmoid_grad(o),  # da_o = dh * tanh(c) * o (1 - o)
            i * tanh_grad(c_tilde),  # da_c = dc * i * (1 - c_tilde^2)
        ],
        axis=-1,
    )
    return o * tanh_grad(tanh_c), f, p


def lstm_step_backward(W_h_T: Array, dstate_next: State, factors_t: tuple) -> tuple:
    """(L6', L5', L1'-L4'): hands out ``(da,)`` (B, 4H), the gates' pre-activations' gradient."""
    (dh, dc_next), (k, f, p) = dstate_next, factors_t
    dc = dc_next + dh * k  # (L6') both paths into c_next
    da = jnp.concatenate([dc, dc, dh, dc], axis=-1) * p  # (L5', L6', L1'-L4')
    return (da @ W_h_T, dc * f), (da,)
