"""One time step of each recurrent cell, forward and backward, on gate-stacked weights.

Letters: B batch, D layer input (V for layer 0, H above), H hidden, G gates of the kind (1 rnn,
3 gru, 4 lstm), T steps, N = T*B rows of a whole sequence. Equation numbers are docs/bptt.md's.

The shared parameter dict keeps every gate apart (``W_xz``, ``W_hz``, ...). Here the gates of a
layer are stacked side by side in the kind's gate order (``spec.gates``: rnn ``h``; gru ``z, r,
h``; lstm ``i, f, o, c``), so that a step costs one product instead of G::

    W_x (D, G*H) = [W_x{g} for g in gates],   W_h (H, G*H) = [W_h{g} ...],   b (G*H,) = [b_{g} ...]

**Features-major.** Inside the recurrence every array is kept transposed against the book's
rows: a state is (H, B), a step's gates (G*H, B), a whole sequence (K, T, B). A step's product
is then ``W_h^T h`` (G*H, H) x (H, B), which XLA's CPU backend runs a quarter to a third faster
than ``h W_h`` (B, H) x (H, G*H) (``python -m tools.bench_probes recurrent``,
docs/performance.md), and a gate is a block of rows (axis 0, :data:`FEATURES`). The equations
below are written in the book's rows; :func:`rnn_jax.models.apply` keeps every sequence in the
cells' layout, as columns (K, T, B), and turns only its interface into rows.

The input part of every gate, ``A_x = X W_x + b`` (N, G*H), is computed for all steps at once
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
``numpy_ref.cells`` (the states ``state_prev``, ``state_next`` are tuples of (H, B) arrays, ``(h,)``
or ``(h, c)``):

- ``step_forward(W, state_prev, a_x) -> (state_next, cache)``, ``a_x`` (G*H, B); ``cache`` holds
  what the backward needs besides the states (the gates, stacked (G*H, B), so that a step saves
  one array).
- ``forward_weights(W_h)``: what the step takes instead of the stacked ``W_h``: its transpose
  written out (the "before" GRU's: two blocks), formed once before the scan, since a slice
  written in a scan's body is redone at every step.

Their backward, split into the factors of every step at once and a lean step for the reverse
scan, is in :mod:`rnn_jax.cell_grads`; :data:`CELLS` holds both.

A step's cache holds neither state: the forward scan writes the states after every step and, when
a backward will follow, the states before it (``rnn_jax.models``), in place as it goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from numpy_ref import cells as np_cells
from numpy_ref.spec import ModelSpec
from rnn_jax import cell_grads as g
from rnn_jax.xla_tricks import transposed

Array = jax.Array
State = tuple[Array, ...]


FEATURES = g.FEATURES  # the axis of the features, and of the stacked gates: 0


def _split(a: Array, parts: int) -> list[Array]:
    return jnp.split(a, parts, axis=FEATURES)


# --- vanilla RNN -------------------------------------------------------------------------------


def rnn_step_forward(W_hh_T: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(R1) ``h_next = tanh(a_x + h_prev W_hh)``.

    Args:
        W_hh_T: (H, H), ``W_hh^T``.
        state_prev: ``(h_prev,)``, (H, B).
        a_x: (H, B), ``x W_xh + b_h``.

    Returns:
        ``(h_next,)`` (H, B) and an empty cache (the backward reads ``h_next``).
    """
    (h_prev,) = state_prev
    h_next = jnp.tanh(a_x + W_hh_T @ h_prev)  # (R1)
    return (h_next,), ()


# --- GRU -----------------------------------------------------------------------------------------


def _gru_output(z: Array, h_prev: Array, h_tilde: Array) -> Array:
    return z * h_prev + (1 - z) * h_tilde  # (G4)


def gru_before_step_forward(
    W_h_T: tuple[Array, Array], state_prev: State, a_x: Array
) -> tuple[State, tuple]:
    """(G1, G2, G3b, G4): the book's GRU, the reset gate before the recurrent product.

    Args:
        W_h_T: ``(W_hzr^T (2H, H), W_hh^T (H, H))``.
        state_prev: ``(h_prev,)``, (H, B).
        a_x: (3H, B), ``[a_z ; a_r ; a_h]``.

    Returns:
        ``(h_next,)`` (H, B) and the cache ``(gates,)``, gates (3H, B) = ``[z ; r ; h_tilde]``.
    """
    W_hzr_T, W_hh_T = W_h_T
    (h_prev,) = state_prev
    H = h_prev.shape[FEATURES]
    zr = jax.nn.sigmoid(a_x[: 2 * H] + W_hzr_T @ h_prev)  # (G1, G2) in one product
    r = zr[H:]
    h_tilde = jnp.tanh(a_x[2 * H :] + W_hh_T @ (r * h_prev))  # (G3b)
    h_next = _gru_output(zr[:H], h_prev, h_tilde)
    return (h_next,), (g.stack_gates([zr, h_tilde]),)


def gru_after_step_forward(W_h_T: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(G1, G2, G3a, G4): PyTorch's (cuDNN's) GRU, the reset gate after the recurrent product.

    Args:
        W_h_T: (3H, H), ``[W_hz | W_hr | W_hh]^T``.
        state_prev: ``(h_prev,)``, (H, B).
        a_x: (3H, B), ``[a_z ; a_r ; a_h]``.

    Returns:
        ``(h_next,)`` (H, B) and the cache ``(gates, hW)``: gates (3H, B) = ``[z ; r ;
        h_tilde]``, hW (H, B) = ``h_prev W_hh``.
    """
    (h_prev,) = state_prev
    H = h_prev.shape[FEATURES]
    hW_all = W_h_T @ h_prev  # (3H, B): the three recurrent products in one
    hW = hW_all[2 * H :]  # h_prev W_hh
    zr = jax.nn.sigmoid(a_x[: 2 * H] + hW_all[: 2 * H])  # (G1, G2)
    h_tilde = jnp.tanh(a_x[2 * H :] + zr[H:] * hW)  # (G3a)
    h_next = _gru_output(zr[:H], h_prev, h_tilde)
    return (h_next,), (g.stack_gates([zr, h_tilde]), hW)


# --- LSTM ----------------------------------------------------------------------------------------


def lstm_step_forward(W_h_T: Array, state_prev: State, a_x: Array) -> tuple[State, tuple]:
    """(L1)-(L6).

    Args:
        W_h_T: (4H, H), ``[W_hi | W_hf | W_ho | W_hc]^T``.
        state_prev: ``(h_prev, c_prev)``, each (H, B).
        a_x: (4H, B), ``[a_i ; a_f ; a_o ; a_c]``.

    Returns:
        ``(h_next, c_next)`` (H, B) each and the cache ``(gates,)``, gates (4H, B) =
        ``[i ; f ; o ; c_tilde]``.
    """
    h_prev, c_prev = state_prev
    H = h_prev.shape[FEATURES]
    a = a_x + W_h_T @ h_prev  # (4H, B): the four gates in one product
    gates = g.stack_gates([jax.nn.sigmoid(a[: 3 * H]), jnp.tanh(a[3 * H :])])  # (L1-L4)
    i, f, o, c_tilde = _split(gates, 4)
    c_next = f * c_prev + i * c_tilde  # (L5)
    h_next = o * jnp.tanh(c_next)  # (L6)
    return (h_next, c_next), (gates,)


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The functions of one cell (module docstring and :mod:`rnn_jax.cell_grads`); ``name`` is
    its key in ``numpy_ref``'s table too, where its kind, gates and states are listed."""

    name: str
    step_forward: Callable[[Any, State, Array], tuple[State, tuple]]
    backward_factors: Callable[[State, State, tuple], tuple]
    step_backward: Callable[[Any, State, tuple], tuple[State, tuple]]
    input_grads: Callable[[tuple, tuple], tuple[Array, Array]]
    weight_grad: Callable[[Array, tuple, Array], Array] = g.weight_grad
    forward_weights: Callable[[Array], Any] = transposed
    backward_weights: Callable[[Array], Any] = g.same
    da_over_factor: bool = False  # step_backward hands out its last factor times dh_next alone


CELLS = {
    "rnn": Cell(
        "rnn",
        rnn_step_forward,
        g.rnn_backward_factors,
        g.rnn_step_backward,
        g.same_input_grads,
        da_over_factor=True,
    ),
    "gru_before": Cell(
        "gru_before",
        gru_before_step_forward,
        g.gru_before_backward_factors,
        g.gru_before_step_backward,
        g.gru_before_input_grads,
        g.gru_before_weight_grad,
        g.split_zr_h_transposed,
        g.split_zr_h,
    ),
    "gru_after": Cell(
        "gru_after",
        gru_after_step_forward,
        g.gru_after_backward_factors,
        g.gru_after_step_backward,
        g.gru_after_input_grads,
    ),
    "lstm": Cell(
        "lstm",
        lstm_step_forward,
        g.lstm_backward_factors,
        g.lstm_step_backward,
        g.same_input_grads,
        da_over_factor=True,
    ),
}


def cell_for(spec: ModelSpec) -> Cell:
    """The cell of ``spec``: the entry of this table named as ``numpy_ref.cells.cell_for``'s."""
    return CELLS[np_cells.cell_for(spec).name]


PACKED = ("W_x", "W_h", "b")  # a packed layer's keys: the gates side by side (stack_layer)


def pack_layers(spec: ModelSpec, params: dict) -> dict:
    """``params`` with each layer's gates side by side (:func:`stack_layer`), traced: the form
    ``rnn_jax.training.pack`` makes on the host, for a jit region that takes the shared dict
    (a population's chunk of steps); any leading axes (members) ride along."""
    layers = [dict(zip(PACKED, stack_layer(spec, lay), strict=True)) for lay in params["layers"]]
    return {**params, "layers": layers}


def unpack_layers(spec: ModelSpec, packed: dict) -> dict:
    """The inverse of :func:`pack_layers`: the shared dict's per-gate arrays."""
    G = len(spec.gates)

    def layer(lay: dict[str, Array]) -> dict[str, Array]:
        parts = [jnp.split(lay[k], G, axis=-1) for k in PACKED]
        gate_by_gate = [parts[k][i] for i in range(G) for k in range(len(PACKED))]
        return dict(zip(spec.layer_keys(), gate_by_gate, strict=True))

    return {**packed, "layers": [layer(lay) for lay in packed["layers"]]}


def stack_layer(spec: ModelSpec, layer: dict[str, Array]) -> tuple[Array, Array, Array]:
    """One layer's gates side by side, in ``spec.gates`` order.

    Args:
        spec: the model.
        layer: the shared dict of one layer, ``W_x{g}`` (D, H), ``W_h{g}`` (H, H), ``b_{g}`` (H,),
            or a packed one (``rnn_jax.training.pack``), ``W_x``, ``W_h``, ``b`` already stacked.

    Returns:
        ``(W_x (D, G*H), W_h (H, G*H), b (G*H,))``; with G = 1 the arrays themselves.
    """
    if PACKED[0] in layer:  # packed
        return tuple(layer[k] for k in PACKED)

    def stack(prefix: str) -> Array:
        parts = [layer[f"{prefix}{g}"] for g in spec.gates]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    return stack("W_x"), stack("W_h"), stack("b_")
