"""One time step of each recurrent cell, forward and backward, on gate-stacked weights.

Letters: B batch, D layer input (V for layer 0, H above), H hidden, G gates of the kind (1 rnn,
3 gru, 4 lstm), T steps, N = T*B rows of a whole sequence. Equation numbers are docs/bptt.md's.

The shared parameter dict keeps every gate apart (``W_xz``, ``W_hz``, ...). Here the gates of a
layer are stacked side by side in the kind's gate order (``spec.gates``: rnn ``h``; gru ``z, r,
h``; lstm ``i, f, o, c``), so that a step costs one (B, H) x (H, G*H) product instead of G::

    W_x (D, G*H) = [W_x{g} for g in gates],   W_h (H, G*H) = [W_h{g} ...],   b (G*H,) = [b_{g} ...]

The input part of every gate, ``A_x = X W_x + b`` (T, B, G*H), is computed for all steps at once
outside the recurrence (I1, I2); a step adds the recurrent part and applies the nonlinearities:

    rnn          H_t = tanh(A_x + H_{t-1} W_hh)                                       (R1)
    gru          Z = sigmoid(A_xz + H_{t-1} W_hz),  R = sigmoid(A_xr + H_{t-1} W_hr)  (G1, G2)
       before    H~ = tanh(A_xh + (R * H_{t-1}) W_hh)     the book's scratch GRU      (G3b)
       after     H~ = tanh(A_xh + R * (H_{t-1} W_hh))     PyTorch / cuDNN             (G3a)
                 H_t = Z * H_{t-1} + (1 - Z) * H~                                     (G4)
    lstm         I, F, O = sigmoid(A_x{i,f,o} + H_{t-1} W_h{i,f,o})                   (L1-L3)
                 C~ = tanh(A_xc + H_{t-1} W_hc)                                       (L4)
                 C_t = F * C_{t-1} + I * C~,  H_t = O * tanh(C_t)                     (L5, L6)

Each cell is a few pure functions in the cs231n manner, with the names and the meaning of
``numpy_ref.cells`` (the states ``state_prev``, ``state_next`` are tuples of (B, H) arrays, ``(h,)``
or ``(h, c)``; ``dstate_next`` is the gradient reaching ``state_next`` by every path, ``dh_next``
the sum of what comes from above and from step t+1 (B1), formed by the scan's body):

- ``step_forward(W, state_prev, a_x) -> (state_next, cache)``, ``a_x`` (B, G*H); ``cache`` holds
  what the backward needs besides the states (the gates, stacked (B, G*H), so that a step saves
  one array).
- ``step_backward(W_T, dstate_next, state_prev, state_next, cache) -> (dstate_prev, da_x,
  da_rec)``: the backward of one step (R1', G1'-G4', L1'-L6'). ``da_x`` (B, G*H) is the gradient
  of ``a_x`` and ``da_rec`` (B, G*H) that of the recurrent product's output (the same array but
  for the "after" GRU, whose candidate product is gated by R). One recurrent product per step;
  two for the "before" GRU, where ``R * h`` enters ``W_hh`` after ``h`` entered ``W_hz, W_hr``.
- ``weight_grad(H_prev_all, caches, dA_rec) -> dW_h`` (H, G*H): the recurrent weights' gradient
  as one product over all N rows after the reverse scan (B2), instead of a sum of T products.
- ``forward_weights(W_h)``, ``backward_weights(W_h)``: what the steps take instead of the stacked
  ``W_h`` (its transpose; the "before" GRU's two blocks), formed once before the scan, since a
  transpose or slice written in a scan's body is redone at every step.

The states before and after every step are the scan's outputs shifted by one (``H_all`` with the
initial state in front), so no step saves ``h_prev``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from numpy_ref import cells as np_cells
from numpy_ref.spec import ModelSpec

Array = jax.Array
State = tuple[Array, ...]


def _rows(a: Array) -> Array:
    """(T, B, K) -> (N, K): every step's rows as one matrix."""
    return a.reshape(-1, a.shape[-1])


def _sigmoid_grad(s: Array) -> Array:
    """d sigmoid(a) / da written with s = sigmoid(a)."""
    return s * (1 - s)


def _tanh_grad(t: Array) -> Array:
    """d tanh(a) / da written with t = tanh(a)."""
    return 1 - t * t


def _split(a: Array, parts: int) -> list[Array]:
    return jnp.split(a, parts, axis=-1)


def _same(W_h: Array) -> Array:
    return W_h


def _transposed(W_h: Array) -> Array:
    return W_h.T


# --- vanilla RNN -------------------------------------------------------------------------------


def rnn_step_forward(W_hh: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(R1) ``h_next = tanh(a_x + h_prev W_hh)``.

    Args:
        W_hh: (H, H).
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, H), ``x W_xh + b_h``.

    Returns:
        ``(h_next,)`` (B, H) and an empty cache (the backward reads ``h_next``).
    """
    (h_prev,) = state_prev
    h_next = jnp.tanh(a_x + h_prev @ W_hh)  # (R1)
    return (h_next,), ()


def rnn_step_backward(
    W_hh_T: Array, dstate_next: State, state_prev: State, state_next: State, cache: tuple
) -> tuple[State, Array, Array]:
    """(R1') through tanh and ``h_prev W_hh``.

    Args:
        W_hh_T: (H, H), ``W_hh`` transposed.
        dstate_next: ``(dh_next,)`` (B, H), by every path.
        state_prev, state_next: ``(h_prev,)``, ``(h_next,)``, (B, H).
        cache: empty.

    Returns:
        ``(dh_prev,)`` (B, H); ``da_x`` = ``da_rec`` (B, H), the gradient of the tanh's input.
    """
    (dh_next,), (h_next,) = dstate_next, state_next
    da = _tanh_grad(h_next) * dh_next  # (R1') through tanh
    return (da @ W_hh_T,), da, da


def rnn_weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2) ``dW_hh = sum_t h_{t-1}^T da_t`` as one product: H_prev_all, dA_rec (T, B, H)."""
    return _rows(H_prev_all).T @ _rows(dA_rec)


# --- GRU -----------------------------------------------------------------------------------------


def _gru_output(z: Array, h_prev: Array, h_tilde: Array) -> Array:
    return z * h_prev + (1 - z) * h_tilde  # (G4)


def _gru_output_backward(
    dh_next: Array, z: Array, h_prev: Array, h_tilde: Array
) -> tuple[Array, Array, Array]:
    """(G4'): gradients of z, of h_tilde, and the direct part of h_prev's."""
    return dh_next * (h_prev - h_tilde), dh_next * (1 - z), dh_next * z


def _split_zr_h(W_h: Array) -> tuple[Array, Array]:
    """(H, 3H) -> ``W_hzr`` (H, 2H), ``W_hh`` (H, H): the "before" GRU multiplies them apart."""
    H = W_h.shape[0]
    return W_h[:, : 2 * H], W_h[:, 2 * H :]


def _split_zr_h_transposed(W_h: Array) -> tuple[Array, Array]:
    W_hzr, W_hh = _split_zr_h(W_h)
    return W_hzr.T, W_hh.T


def gru_before_step_forward(
    W_h: tuple[Array, Array], state_prev: State, a_x: Array
) -> tuple[State, tuple]:
    """(G1, G2, G3b, G4): the book's GRU, the reset gate before the recurrent product.

    Args:
        W_h: ``(W_hzr (H, 2H), W_hh (H, H))``.
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, 3H), ``[a_z | a_r | a_h]``.

    Returns:
        ``(h_next,)`` (B, H) and the cache ``(gates,)``, gates (B, 3H) = ``[z | r | h_tilde]``.
    """
    W_hzr, W_hh = W_h
    (h_prev,) = state_prev
    H = h_prev.shape[-1]
    zr = jax.nn.sigmoid(a_x[:, : 2 * H] + h_prev @ W_hzr)  # (G1, G2) in one product
    r = zr[:, H:]
    h_tilde = jnp.tanh(a_x[:, 2 * H :] + (r * h_prev) @ W_hh)  # (G3b)
    h_next = _gru_output(zr[:, :H], h_prev, h_tilde)
    return (h_next,), (jnp.concatenate([zr, h_tilde], axis=-1),)


def gru_before_step_backward(
    W_h_T: tuple[Array, Array],
    dstate_next: State,
    state_prev: State,
    state_next: State,
    cache: tuple,
) -> tuple[State, Array, Array]:
    """(G4', G3', G3b', G2', G1').

    Args:
        W_h_T: ``(W_hzr^T (2H, H), W_hh^T (H, H))``.
        dstate_next: ``(dh_next,)`` (B, H), by every path.
        state_prev: ``(h_prev,)``; state_next: ``(h_next,)`` (unused); (B, H).
        cache: ``(gates,)`` of the forward.

    Returns:
        ``(dh_prev,)`` (B, H); ``da_x`` = ``da_rec`` (B, 3H) ``[da_z | da_r | da_h]``.
    """
    W_hzr_T, W_hh_T = W_h_T
    (dh_next,), (h_prev,), (gates,) = dstate_next, state_prev, cache
    z, r, h_tilde = _split(gates, 3)
    dz, dh_tilde, dh_prev = _gru_output_backward(dh_next, z, h_prev, h_tilde)
    da_h = _tanh_grad(h_tilde) * dh_tilde  # (G3') through tanh
    drh = da_h @ W_hh_T  # (G3b') through rh W_hh, rh = r * h_prev
    dr = drh * h_prev
    da_zr = jnp.concatenate([_sigmoid_grad(z) * dz, _sigmoid_grad(r) * dr], axis=-1)  # (G1', G2')
    dh_prev = dh_prev + drh * r + da_zr @ W_hzr_T  # the three other paths to h_prev
    da = jnp.concatenate([da_zr, da_h], axis=-1)
    return (dh_prev,), da, da


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
    dW_hzr = _rows(H_prev_all).T @ _rows(dA_rec[..., : 2 * H])
    rh = gates[..., H : 2 * H] * H_prev_all  # the input of W_hh is r * h_prev
    dW_hh = _rows(rh).T @ _rows(dA_rec[..., 2 * H :])
    return jnp.concatenate([dW_hzr, dW_hh], axis=-1)


def gru_after_step_forward(W_h: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(G1, G2, G3a, G4): PyTorch's (cuDNN's) GRU, the reset gate after the recurrent product.

    Args:
        W_h: (H, 3H), ``[W_hz | W_hr | W_hh]``.
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, 3H), ``[a_z | a_r | a_h]``.

    Returns:
        ``(h_next,)`` (B, H) and the cache ``(gates, hW)``: gates (B, 3H) = ``[z | r |
        h_tilde]``, hW (B, H) = ``h_prev W_hh``.
    """
    (h_prev,) = state_prev
    H = h_prev.shape[-1]
    hW_all = h_prev @ W_h  # (B, 3H): the three recurrent products in one
    hW = hW_all[:, 2 * H :]  # h_prev W_hh
    zr = jax.nn.sigmoid(a_x[:, : 2 * H] + hW_all[:, : 2 * H])  # (G1, G2)
    h_tilde = jnp.tanh(a_x[:, 2 * H :] + zr[:, H:] * hW)  # (G3a)
    h_next = _gru_output(zr[:, :H], h_prev, h_tilde)
    return (h_next,), (jnp.concatenate([zr, h_tilde], axis=-1), hW)


def gru_after_step_backward(
    W_h_T: Array, dstate_next: State, state_prev: State, state_next: State, cache: tuple
) -> tuple[State, Array, Array]:
    """(G4', G3', G3a', G2', G1').

    Args:
        W_h_T: (3H, H), ``W_h`` transposed.
        dstate_next: ``(dh_next,)`` (B, H), by every path.
        state_prev: ``(h_prev,)``; state_next: ``(h_next,)`` (unused); (B, H).
        cache: ``(gates, hW)`` of the forward.

    Returns:
        ``(dh_prev,)`` (B, H); ``da_x`` (B, 3H) ``[da_z | da_r | da_h]``; ``da_rec`` (B, 3H)
        ``[da_z | da_r | r * da_h]``, the gradient of ``h_prev W_h``.
    """
    (dh_next,), (h_prev,), (gates, hW) = dstate_next, state_prev, cache
    z, r, h_tilde = _split(gates, 3)
    dz, dh_tilde, dh_prev = _gru_output_backward(dh_next, z, h_prev, h_tilde)
    da_h = _tanh_grad(h_tilde) * dh_tilde  # (G3') through tanh
    dr, dhW = da_h * hW, da_h * r  # (G3a') through r * (h_prev W_hh)
    da_zr = jnp.concatenate([_sigmoid_grad(z) * dz, _sigmoid_grad(r) * dr], axis=-1)  # (G1', G2')
    da_rec = jnp.concatenate([da_zr, dhW], axis=-1)
    dh_prev = dh_prev + da_rec @ W_h_T  # one product for the three recurrent paths
    return (dh_prev,), jnp.concatenate([da_zr, da_h], axis=-1), da_rec


def gru_after_weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2): ``dW_h = sum_t h_{t-1}^T da_rec_t`` as one product, (H, 3H)."""
    return _rows(H_prev_all).T @ _rows(dA_rec)


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_step_forward(W_h: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(L1)-(L6).

    Args:
        W_h: (H, 4H), ``[W_hi | W_hf | W_ho | W_hc]``.
        state_prev: ``(h_prev, c_prev)``, each (B, H).
        a_x: (B, 4H), ``[a_i | a_f | a_o | a_c]``.

    Returns:
        ``(h_next, c_next)`` (B, H) each and the cache ``(gates,)``, gates (B, 4H) =
        ``[i | f | o | c_tilde]``.
    """
    h_prev, c_prev = state_prev
    H = h_prev.shape[-1]
    a = a_x + h_prev @ W_h  # (B, 4H): the four gates in one product
    gates = jnp.concatenate(  # (L1-L4): i, f, o | c_tilde
        [jax.nn.sigmoid(a[:, : 3 * H]), jnp.tanh(a[:, 3 * H :])], axis=-1
    )
    i, f, o, c_tilde = _split(gates, 4)
    c_next = f * c_prev + i * c_tilde  # (L5)
    h_next = o * jnp.tanh(c_next)  # (L6)
    return (h_next, c_next), (gates,)


def lstm_step_backward(
    W_h_T: Array, dstate_next: State, state_prev: State, state_next: State, cache: tuple
) -> tuple[State, Array, Array]:
    """(L6', L5', L1'-L4').

    Args:
        W_h_T: (4H, H), ``W_h`` transposed.
        dstate_next: ``(dh_next, dc_next)`` (B, H) each: ``h_next``'s by every path,
            ``c_next``'s from step t+1.
        state_prev: ``(h_prev, c_prev)``; state_next: ``(h_next, c_next)``; (B, H) each.
        cache: ``(gates,)`` of the forward.

    Returns:
        ``(dh_prev, dc_prev)`` (B, H) each; ``da_x`` = ``da_rec`` (B, 4H), the gradient of the
        gates' pre-activations.
    """
    (_, c_prev), (_, c_next), (gates,) = state_prev, state_next, cache
    H = c_next.shape[-1]
    i, f, o, c_tilde = _split(gates, 4)
    dh_next, dc_next = dstate_next
    tanh_c = jnp.tanh(c_next)  # recomputed: cheaper than saving it
    dc = dc_next + dh_next * o * _tanh_grad(tanh_c)  # (L6') through tanh, plus C's path to t+1
    dgates = jnp.concatenate(
        [dc * c_tilde, dc * c_prev, dh_next * tanh_c, dc * i], axis=-1
    )  # (L5', L6'): di, df, do, dc_tilde
    sig = gates[:, : 3 * H]
    da = dgates * jnp.concatenate([_sigmoid_grad(sig), _tanh_grad(c_tilde)], axis=-1)  # (L1'-L4')
    return (da @ W_h_T, dc * f), da, da


def lstm_weight_grad(H_prev_all: Array, caches: tuple, dA_rec: Array) -> Array:
    """(B2): ``dW_h = sum_t h_{t-1}^T da_t`` as one product, (H, 4H)."""
    return _rows(H_prev_all).T @ _rows(dA_rec)


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The functions of one cell (module docstring); ``name`` is its key in ``numpy_ref``'s
    table too, where its kind, gates and states are listed."""

    name: str
    step_forward: Callable[[Any, State, Array], tuple[State, tuple]]
    step_backward: Callable[..., tuple[State, Array, Array]]
    weight_grad: Callable[[Array, tuple, Array], Array]
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
        _split_zr_h_transposed,
    ),
    "gru_after": Cell(
        "gru_after", gru_after_step_forward, gru_after_step_backward, gru_after_weight_grad
    ),
    "lstm": Cell("lstm", lstm_step_forward, lstm_step_backward, lstm_weight_grad),
}


def cell_for(spec: ModelSpec) -> Cell:
    """The cell of ``spec``: the entry of this table named as ``numpy_ref.cells.cell_for``'s."""
    return CELLS[np_cells.cell_for(spec).name]


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
