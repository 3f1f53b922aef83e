"""One time step of each recurrent cell, forward and backward, on gate-stacked weights.

Letters: B batch, D layer input (V for layer 0, H above), H hidden, G gates of the kind (1 rnn,
3 gru, 4 lstm), N = T*B rows of a whole sequence.

The shared parameter dict keeps every gate apart (``W_xz``, ``W_hz``, ...). Here the gates of a
layer are stacked side by side in the kind's gate order (``spec.gates``: rnn ``h``; gru ``z, r,
h``; lstm ``i, f, o, c``), so that a step costs one (B, H) x (H, G*H) product instead of G::

    W_x (D, G*H) = [W_x{g} for g in gates],   W_h (H, G*H) = [W_h{g} ...],   b (G*H,) = [b_{g} ...]

The input part of every gate, ``A_x = X W_x + b`` (T, B, G*H), is computed for all steps at once
outside the recurrence; a step adds the recurrent part and applies the nonlinearities:

    rnn          H_t = tanh(A_x + H_{t-1} W_hh)
    gru          Z = sigmoid(A_xz + H_{t-1} W_hz),  R = sigmoid(A_xr + H_{t-1} W_hr)
       before    H~ = tanh(A_xh + (R * H_{t-1}) W_hh)           (the book's scratch GRU)
       after     H~ = tanh(A_xh + R * (H_{t-1} W_hh))           (PyTorch / cuDNN)
                 H_t = Z * H_{t-1} + (1 - Z) * H~
    lstm         I, F, O = sigmoid(A_x{i,f,o} + H_{t-1} W_h{i,f,o}),  C~ = tanh(A_xc + H_{t-1} W_hc)
                 C_t = F * C_{t-1} + I * C~,  H_t = O * tanh(C_t)

Each cell is three pure functions in the cs231n manner (docs/bptt.md has the derivations):

- ``step_forward(W_h, carry, a_x) -> (carry_next, h_next, cache)``: ``carry`` is the state
  tuple ``(h,)`` or ``(h, c)`` of (B, H) arrays, ``a_x`` (B, G*H), ``h_next`` (B, H);
- ``step_backward(W_h_T, dcarry_next, dh_out, cache) -> (dcarry_prev, da_x, da_rec)``: ``dh_out``
  (B, H) is the loss gradient reaching ``h_next`` from above (the next layer or the output),
  ``dcarry_next`` the one reaching the carry from step t+1; ``da_x`` (B, G*H) is the gradient of
  ``a_x``; ``da_rec`` (B, G*H) the gradient of the recurrent product's output; one recurrent
  product per step (two for the "before" GRU, whose candidate multiplies ``R * H`` by ``W_hh``);
- ``weight_grad(caches, da_rec) -> dW_h`` (H, G*H): the recurrent weights' gradient as one
  product over all N rows, after the reverse scan (``caches`` and ``da_rec`` stacked over T).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from numpy_ref.spec import ModelSpec

Array = jax.Array
Carry = tuple[Array, ...]


def _rows(a: Array) -> Array:
    """(T, B, K) -> (T*B, K): every step's rows as one matrix."""
    return a.reshape(-1, a.shape[-1])


def _sigmoid_grad(s: Array) -> Array:
    """d sigmoid(a) / da written with s = sigmoid(a)."""
    return s * (1 - s)


def _tanh_grad(t: Array) -> Array:
    """d tanh(a) / da written with t = tanh(a)."""
    return 1 - t * t


# --- vanilla RNN -------------------------------------------------------------------------------


def rnn_step_forward(W_hh: Array, carry: Carry, a_x: Array) -> tuple[Carry, Array, tuple]:
    (h_prev,) = carry
    h_next = jnp.tanh(a_x + h_prev @ W_hh)
    return (h_next,), h_next, (h_prev, h_next)


def rnn_step_backward(
    W_hh_T: Array, dcarry_next: Carry, dh_out: Array, cache: tuple
) -> tuple[Carry, Array, Array]:
    (dh_next,) = dcarry_next
    h_prev, h_next = cache
    dh = dh_next + dh_out  # h_next feeds both the next step and the layer above
    da = _tanh_grad(h_next) * dh  # backprop through tanh
    dh_prev = da @ W_hh_T
    return (dh_prev,), da, da


def rnn_weight_grad(caches: tuple, da_rec: Array) -> Array:
    h_prev = caches[0]
    return _rows(h_prev).T @ _rows(da_rec)


# --- GRU -----------------------------------------------------------------------------------------


def _split3(a: Array) -> tuple[Array, Array, Array]:
    return tuple(jnp.split(a, 3, axis=-1))  # type: ignore[return-value]


def _split_zr_h(W_h: Array) -> tuple[Array, Array]:
    """(H, 3H) -> ``W_hzr`` (H, 2H), ``W_hh`` (H, H): the "before" GRU multiplies them apart."""
    H = W_h.shape[0]
    return W_h[:, : 2 * H], W_h[:, 2 * H :]


def gru_before_step_forward(
    W_h: tuple[Array, Array], carry: Carry, a_x: Array
) -> tuple[Carry, Array, tuple]:
    W_hzr, W_hh = W_h
    (h_prev,) = carry
    H = h_prev.shape[-1]
    a_xz, a_xr, a_xh = _split3(a_x)
    a_zr = h_prev @ W_hzr  # recurrent parts of the update and reset gates
    z = jax.nn.sigmoid(a_xz + a_zr[:, :H])
    r = jax.nn.sigmoid(a_xr + a_zr[:, H:])
    rh = r * h_prev
    h_tilde = jnp.tanh(a_xh + rh @ W_hh)
    h_next = z * h_prev + (1 - z) * h_tilde
    return (h_next,), h_next, (h_prev, z, r, h_tilde)


def gru_before_step_backward(
    W_h_T: tuple[Array, Array], dcarry_next: Carry, dh_out: Array, cache: tuple
) -> tuple[Carry, Array, Array]:
    W_hzr_T, W_hh_T = W_h_T
    (dh_next,) = dcarry_next
    h_prev, z, r, h_tilde = cache
    dh = dh_next + dh_out
    dz = dh * (h_prev - h_tilde)  # h_next = z * h_prev + (1 - z) * h_tilde
    dh_tilde = dh * (1 - z)
    dh_prev = dh * z
    da_h = _tanh_grad(h_tilde) * dh_tilde  # backprop through tanh
    drh = da_h @ W_hh_T  # through (r * h_prev) @ W_hh
    dr = drh * h_prev
    dh_prev = dh_prev + drh * r
    da_z = _sigmoid_grad(z) * dz
    da_r = _sigmoid_grad(r) * dr
    da_zr = jnp.concatenate([da_z, da_r], axis=-1)
    dh_prev = dh_prev + da_zr @ W_hzr_T  # through h_prev @ [W_hz W_hr]
    da = jnp.concatenate([da_zr, da_h], axis=-1)
    return (dh_prev,), da, da


def gru_before_weight_grad(caches: tuple, da_rec: Array) -> Array:
    h_prev, _, r, _ = caches
    H = h_prev.shape[-1]
    dW_hzr = _rows(h_prev).T @ _rows(da_rec[..., : 2 * H])
    dW_hh = _rows(r * h_prev).T @ _rows(da_rec[..., 2 * H :])  # the candidate reads r * h_prev
    return jnp.concatenate([dW_hzr, dW_hh], axis=-1)


def gru_after_step_forward(W_h: Array, carry: Carry, a_x: Array) -> tuple[Carry, Array, tuple]:
    (h_prev,) = carry
    a_xz, a_xr, a_xh = _split3(a_x)
    a_hz, a_hr, a_hh = _split3(h_prev @ W_h)  # one product for the three gates
    z = jax.nn.sigmoid(a_xz + a_hz)
    r = jax.nn.sigmoid(a_xr + a_hr)
    h_tilde = jnp.tanh(a_xh + r * a_hh)
    h_next = z * h_prev + (1 - z) * h_tilde
    return (h_next,), h_next, (h_prev, z, r, h_tilde, a_hh)


def gru_after_step_backward(
    W_h_T: Array, dcarry_next: Carry, dh_out: Array, cache: tuple
) -> tuple[Carry, Array, Array]:
    (dh_next,) = dcarry_next
    h_prev, z, r, h_tilde, a_hh = cache
    dh = dh_next + dh_out
    dz = dh * (h_prev - h_tilde)
    dh_tilde = dh * (1 - z)
    da_h = _tanh_grad(h_tilde) * dh_tilde  # backprop through tanh
    dr = da_h * a_hh  # through r * (h_prev @ W_hh)
    da_hh = da_h * r
    da_z = _sigmoid_grad(z) * dz
    da_r = _sigmoid_grad(r) * dr
    da_rec = jnp.concatenate([da_z, da_r, da_hh], axis=-1)
    dh_prev = dh * z + da_rec @ W_h_T
    return (dh_prev,), jnp.concatenate([da_z, da_r, da_h], axis=-1), da_rec


def gru_after_weight_grad(caches: tuple, da_rec: Array) -> Array:
    return _rows(caches[0]).T @ _rows(da_rec)


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_step_forward(W_h: Array, carry: Carry, a_x: Array) -> tuple[Carry, Array, tuple]:
    h_prev, c_prev = carry
    a = a_x + h_prev @ W_h  # (B, 4H): the four gates in one product
    a_i, a_f, a_o, a_c = jnp.split(a, 4, axis=-1)
    i, f, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_o)
    c_tilde = jnp.tanh(a_c)
    c_next = f * c_prev + i * c_tilde
    tanh_c = jnp.tanh(c_next)
    h_next = o * tanh_c
    return (h_next, c_next), h_next, (h_prev, c_prev, i, f, o, c_tilde, tanh_c)


def lstm_step_backward(
    W_h_T: Array, dcarry_next: Carry, dh_out: Array, cache: tuple
) -> tuple[Carry, Array, Array]:
    dh_next, dc_next = dcarry_next
    h_prev, c_prev, i, f, o, c_tilde, tanh_c = cache
    dh = dh_next + dh_out
    do = dh * tanh_c  # h_next = o * tanh(c_next)
    dc = dc_next + dh * o * _tanh_grad(tanh_c)
    di, df, dc_tilde = dc * c_tilde, dc * c_prev, dc * i  # c_next = f * c_prev + i * c_tilde
    dc_prev = dc * f
    da = jnp.concatenate(
        [
            _sigmoid_grad(i) * di,
            _sigmoid_grad(f) * df,
            _sigmoid_grad(o) * do,
            _tanh_grad(c_tilde) * dc_tilde,
        ],
        axis=-1,
    )
    dh_prev = da @ W_h_T
    return (dh_prev, dc_prev), da, da


def lstm_weight_grad(caches: tuple, da_rec: Array) -> Array:
    return _rows(caches[0]).T @ _rows(da_rec)


# --- the table ---------------------------------------------------------------------------------


def _same(W_h: Array) -> Array:
    return W_h


def _transposed(W_h: Array) -> Array:
    return W_h.T


def _split_transposed(W_h: Array) -> tuple[Array, Array]:
    return tuple(w.T for w in _split_zr_h(W_h))  # type: ignore[return-value]


@dataclass(frozen=True)
class Cell:
    """The functions of one cell (see the module docstring).

    ``forward_weights(W_h)`` and ``backward_weights(W_h)`` turn the stacked (H, G*H) recurrent
    weights into what ``step_forward`` and ``step_backward`` take (``W_h``; its transpose; the
    "before" GRU's two blocks), once, before the scan: a transpose or slice written inside the
    scan's body is redone at every step.
    """

    name: str
    step_forward: Callable[[Any, Carry, Array], tuple[Carry, Array, Any]]
    step_backward: Callable[[Any, Carry, Array, Any], tuple[Carry, Array, Array]]
    weight_grad: Callable[[Any, Array], Array]
    forward_weights: Callable[[Array], Any] = _same
    backward_weights: Callable[[Array], Any] = _transposed


CELLS = {
    "rnn": Cell("rnn", rnn_step_forward, rnn_step_backward, rnn_weight_grad),
    "gru_before": Cell(
        "gru_before",
        gru_before_step_forward,
        gru_before_step_backward,
        gru_before_weight_grad,
        _split_zr_h,
        _split_transposed,
    ),
    "gru_after": Cell(
        "gru_after", gru_after_step_forward, gru_after_step_backward, gru_after_weight_grad
    ),
    "lstm": Cell("lstm", lstm_step_forward, lstm_step_backward, lstm_weight_grad),
}


def cell_for(spec: ModelSpec) -> Cell:
    """The cell of ``spec``: its kind, and for a GRU where the reset gate acts."""
    return CELLS[f"gru_{spec.gru_reset}" if spec.kind == "gru" else spec.kind]


def stack_layer(spec: ModelSpec, layer: dict[str, Array]) -> tuple[Array, Array, Array]:
    """One layer's gates side by side, in ``spec.gates`` order.

    Args:
        spec: the model.
        layer: the shared dict of one layer, ``W_x{g}`` (D, H), ``W_h{g}`` (H, H), ``b_{g}`` (H,).

    Returns:
        ``(W_x (D, G*H), W_h (H, G*H), b (G*H,))``; with G = 1 the arrays themselves.
    """

    def stack(prefix: str) -> Array:
        parts = [layer[f"{prefix}{g}"] for g in spec.gates]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    return stack("W_x"), stack("W_h"), stack("b_")
