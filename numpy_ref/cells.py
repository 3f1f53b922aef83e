"""One time step of each recurrent cell, forward and backward, and the table of cells.

Letters: B batch, H hidden, G gates of the cell (1 rnn, 3 gru, 4 lstm). The numbers in brackets,
(R1), (G3b'), ..., are the equations of docs/bptt.md; a primed number is the backward of that
forward equation.

A layer keeps one weight matrix per gate (``W_hz``, ``W_hr``, ...). A step takes them side by side,
in the cell's gate order, so that one product serves every gate::

    W_h (H, G*H) = [W_h{g} for g in gates]          a_x (B, G*H) = [x W_x{g} + b_{g} for g in gates]

``a_x``, the input part of every gate, is computed for all steps at once before the loop over time
((I1), (I2) in :mod:`numpy_ref.models`). Every cell offers the same two functions, in the cs231n
manner (a cache out of the forward, into the backward):

- ``step_forward(W_h, state_prev, a_x) -> (state_next, cache)``;
- ``step_backward(W_h, dstate_next, cache) -> (da_x, dstate_prev, dW_h)``.

``state_prev`` and ``state_next`` are tuples of (B, H) arrays, ``(h,)`` for rnn and gru, ``(h, c)``
for lstm. ``dstate_next`` holds the gradient of the loss with respect to ``state_next`` by every
path: ``dh_next`` is the sum of what reaches ``h_next`` from above and from step t+1 (B1, formed by
the layer's loop), ``dc_next`` what reaches ``c_next`` from step t+1. The backward returns
``da_x`` (B, G*H), the gradient of ``a_x`` (it goes to (I1') or (I2')), ``dstate_prev``, the
gradient of ``state_prev`` through this step, and ``dW_h`` (H, G*H), this step's share of the
recurrent weights' gradient (the layer adds the shares of all steps, (B2)).

:data:`CELLS` lists the cells, with the same names in the same order as ``rnn_jax.cells.CELLS``;
everything that enumerates kinds (the spec, the models, the tests, the PyTorch mapping) reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

State = tuple[np.ndarray, ...]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``, written as ``(1 + tanh(x / 2)) / 2``.

    The same function (``tanh(x/2) = (1 - e^-x) / (1 + e^-x)``), in three passes over the array
    instead of the six of a guarded ``exp`` (docs/performance.md), and it never overflows:
    ``tanh`` saturates at +-1. Its derivative is ``s (1 - s)``.
    """
    return 0.5 + 0.5 * np.tanh(0.5 * x)


# --- vanilla RNN -------------------------------------------------------------------------------


def rnn_step_forward(
    W_h: np.ndarray, state_prev: State, a_x: np.ndarray
) -> tuple[State, tuple[np.ndarray, ...]]:
    """One step of the vanilla RNN (R1): ``h_next = tanh(a_x + h_prev W_hh)``.

    Args:
        W_h: (H, H), ``W_hh``.
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, H), ``x W_xh + b_h``.

    Returns:
        ``(h_next,)`` (B, H) and the cache for :func:`rnn_step_backward`.
    """
    (h_prev,) = state_prev
    h_next = np.tanh(a_x + h_prev @ W_h)  # (R1)
    return (h_next,), (h_prev, h_next)


def rnn_step_backward(
    W_h: np.ndarray, dstate_next: State, cache: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, State, np.ndarray]:
    """Backward of :func:`rnn_step_forward`.

    Args:
        W_h: (H, H), ``W_hh``.
        dstate_next: ``(dh_next,)``, (B, H): the gradient reaching ``h_next`` by every path.
        cache: from the forward step.

    Returns:
        ``da_x`` (B, H); ``(dh_prev,)`` (B, H); ``dW_h`` (H, H), this step's share of ``dW_hh``.
    """
    (dh_next,) = dstate_next
    h_prev, h_next = cache
    da = dh_next * (1.0 - h_next * h_next)  # (R1') through tanh: tanh' = 1 - tanh^2
    dh_prev = da @ W_h.T  # (R1') through h_prev W_hh, w.r.t. h_prev
    dW_h = h_prev.T @ da  # (R1') through h_prev W_hh, w.r.t. W_hh
    return da, (dh_prev,), dW_h


# --- GRU ---------------------------------------------------------------------------------------


def _gru_output_backward(
    dh_next: np.ndarray, h_prev: np.ndarray, z: np.ndarray, h_tilde: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G4'), both variants: the gradients of Z, of h_tilde, and h_prev's direct path."""
    dz = dh_next * (h_prev - h_tilde)  # (G4') w.r.t. Z
    dh_tilde = dh_next * (1.0 - z)  # (G4') w.r.t. h_tilde
    dh_prev = dh_next * z  # (G4') w.r.t. h_prev, the direct path
    return dz, dh_tilde, dh_prev


def gru_before_step_forward(
    W_h: np.ndarray, state_prev: State, a_x: np.ndarray
) -> tuple[State, tuple[np.ndarray, ...]]:
    """One step of the book's GRU, the reset gate applied before the recurrent product::

        Z       = sigmoid(a_z + h_prev W_hz)                 (G1) update gate
        R       = sigmoid(a_r + h_prev W_hr)                 (G2) reset gate
        rh      = R * h_prev                                      the input of W_hh
        h_tilde = tanh(a_h + rh W_hh)                        (G3b)
        h_next  = Z * h_prev + (1 - Z) * h_tilde             (G4)

    Args:
        W_h: (H, 3H), ``[W_hz | W_hr | W_hh]``.
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, 3H), ``[a_z | a_r | a_h]``, each ``x W_xg + b_g``.

    Returns:
        ``(h_next,)`` (B, H) and the cache for :func:`gru_before_step_backward`.
    """
    (h_prev,) = state_prev
    H = h_prev.shape[1]
    zr = sigmoid(a_x[:, : 2 * H] + h_prev @ W_h[:, : 2 * H])  # (G1), (G2) in one product
    z, r = zr[:, :H], zr[:, H:]
    rh = r * h_prev
    h_tilde = np.tanh(a_x[:, 2 * H :] + rh @ W_h[:, 2 * H :])  # (G3b)
    h_next = z * h_prev + (1.0 - z) * h_tilde  # (G4)
    return (h_next,), (h_prev, z, r, rh, h_tilde)


def gru_before_step_backward(
    W_h: np.ndarray, dstate_next: State, cache: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, State, np.ndarray]:
    """Backward of :func:`gru_before_step_forward`.

    Args:
        W_h: (H, 3H), ``[W_hz | W_hr | W_hh]``.
        dstate_next: ``(dh_next,)``, (B, H): the gradient reaching ``h_next`` by every path.
        cache: from the forward step.

    Returns:
        ``da_x`` (B, 3H) ``[da_z | da_r | da_h]``; ``(dh_prev,)`` (B, H); ``dW_h`` (H, 3H),
        this step's share of ``[dW_hz | dW_hr | dW_hh]``.
    """
    (dh_next,) = dstate_next
    h_prev, z, r, rh, h_tilde = cache
    H = h_prev.shape[1]
    dz, dh_tilde, dh_prev = _gru_output_backward(dh_next, h_prev, z, h_tilde)  # (G4')
    da_h = dh_tilde * (1.0 - h_tilde * h_tilde)  # (G3') through tanh
    drh = da_h @ W_h[:, 2 * H :].T  # (G3b') through rh W_hh, w.r.t. rh
    dr = drh * h_prev  # (G3b') ... w.r.t. R
    dh_prev += drh * r  # (G3b') ... w.r.t. h_prev
    da_z = dz * z * (1.0 - z)  # (G1') through sigmoid: s' = s (1 - s)
    da_r = dr * r * (1.0 - r)  # (G2') through sigmoid
    da_zr = np.concatenate([da_z, da_r], axis=1)  # (B, 2H)
    dh_prev += da_zr @ W_h[:, : 2 * H].T  # (G1'), (G2') through h_prev W_hz, h_prev W_hr
    dW_h = np.concatenate([h_prev.T @ da_zr, rh.T @ da_h], axis=1)  # (G1', G2', G3b') w.r.t. W_h
    return np.concatenate([da_zr, da_h], axis=1), (dh_prev,), dW_h


def gru_after_step_forward(
    W_h: np.ndarray, state_prev: State, a_x: np.ndarray
) -> tuple[State, tuple[np.ndarray, ...]]:
    """One step of PyTorch's (cuDNN's) GRU, the reset gate applied after the recurrent product::

        Z       = sigmoid(a_z + h_prev W_hz)                 (G1) update gate
        R       = sigmoid(a_r + h_prev W_hr)                 (G2) reset gate
        hW      = h_prev W_hh                                     the output of W_hh
        h_tilde = tanh(a_h + R * hW)                         (G3a)
        h_next  = Z * h_prev + (1 - Z) * h_tilde             (G4)

    Args:
        W_h: (H, 3H), ``[W_hz | W_hr | W_hh]``.
        state_prev: ``(h_prev,)``, (B, H).
        a_x: (B, 3H), ``[a_z | a_r | a_h]``, each ``x W_xg + b_g``.

    Returns:
        ``(h_next,)`` (B, H) and the cache for :func:`gru_after_step_backward`.
    """
    (h_prev,) = state_prev
    H = h_prev.shape[1]
    hW_all = h_prev @ W_h  # (B, 3H): h_prev W_hz | h_prev W_hr | h_prev W_hh, in one product
    zr = sigmoid(a_x[:, : 2 * H] + hW_all[:, : 2 * H])  # (G1), (G2)
    z, r = zr[:, :H], zr[:, H:]
    hW = hW_all[:, 2 * H :]
    h_tilde = np.tanh(a_x[:, 2 * H :] + r * hW)  # (G3a)
    h_next = z * h_prev + (1.0 - z) * h_tilde  # (G4)
    return (h_next,), (h_prev, z, r, hW, h_tilde)


def gru_after_step_backward(
    W_h: np.ndarray, dstate_next: State, cache: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, State, np.ndarray]:
    """Backward of :func:`gru_after_step_forward`.

    Args:
        W_h: (H, 3H), ``[W_hz | W_hr | W_hh]``.
        dstate_next: ``(dh_next,)``, (B, H): the gradient reaching ``h_next`` by every path.
        cache: from the forward step.

    Returns:
        ``da_x`` (B, 3H) ``[da_z | da_r | da_h]``; ``(dh_prev,)`` (B, H); ``dW_h`` (H, 3H),
        this step's share of ``[dW_hz | dW_hr | dW_hh]``.
    """
    (dh_next,) = dstate_next
    h_prev, z, r, hW, h_tilde = cache
    dz, dh_tilde, dh_prev = _gru_output_backward(dh_next, h_prev, z, h_tilde)  # (G4')
    da_h = dh_tilde * (1.0 - h_tilde * h_tilde)  # (G3') through tanh
    dr = da_h * hW  # (G3a') through R * hW, w.r.t. R
    dhW = da_h * r  # (G3a') ... w.r.t. hW = h_prev W_hh
    da_z = dz * z * (1.0 - z)  # (G1') through sigmoid: s' = s (1 - s)
    da_r = dr * r * (1.0 - r)  # (G2') through sigmoid
    da_rec = np.concatenate([da_z, da_r, dhW], axis=1)  # (B, 3H): the gradient of h_prev W_h
    dh_prev += da_rec @ W_h.T  # (G1', G2', G3a') through h_prev W_h, w.r.t. h_prev
    dW_h = h_prev.T @ da_rec  # (G1', G2', G3a') ... w.r.t. W_h
    return np.concatenate([da_z, da_r, da_h], axis=1), (dh_prev,), dW_h


# --- LSTM --------------------------------------------------------------------------------------


def lstm_step_forward(
    W_h: np.ndarray, state_prev: State, a_x: np.ndarray
) -> tuple[State, tuple[np.ndarray, ...]]:
    """One LSTM step, (L1)-(L6)::

        I       = sigmoid(a_i + h_prev W_hi)        (L1) input gate
        F       = sigmoid(a_f + h_prev W_hf)        (L2) forget gate
        O       = sigmoid(a_o + h_prev W_ho)        (L3) output gate
        c_tilde = tanh(a_c + h_prev W_hc)           (L4) candidate memory
        c_next  = F * c_prev + I * c_tilde          (L5)
        h_next  = O * tanh(c_next)                  (L6)

    Args:
        W_h: (H, 4H), ``[W_hi | W_hf | W_ho | W_hc]``.
        state_prev: ``(h_prev, c_prev)``, each (B, H); ``c`` is the memory cell.
        a_x: (B, 4H), ``[a_i | a_f | a_o | a_c]``, each ``x W_xg + b_g``.

    Returns:
        ``(h_next, c_next)`` (B, H) each and the cache for :func:`lstm_step_backward`.
    """
    h_prev, c_prev = state_prev
    H = h_prev.shape[1]
    a = a_x + h_prev @ W_h  # (B, 4H): the four gates' pre-activations in one product
    ifo = sigmoid(a[:, : 3 * H])  # (L1), (L2), (L3)
    i, f, o = ifo[:, :H], ifo[:, H : 2 * H], ifo[:, 2 * H :]
    c_tilde = np.tanh(a[:, 3 * H :])  # (L4)
    c_next = f * c_prev + i * c_tilde  # (L5)
    tanh_c = np.tanh(c_next)
    h_next = o * tanh_c  # (L6)
    return (h_next, c_next), (h_prev, c_prev, i, f, o, c_tilde, tanh_c)


def lstm_step_backward(
    W_h: np.ndarray, dstate_next: State, cache: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, State, np.ndarray]:
    """Backward of :func:`lstm_step_forward`.

    Args:
        W_h: (H, 4H), ``[W_hi | W_hf | W_ho | W_hc]``.
        dstate_next: ``(dh_next, dc_next)``, each (B, H): the gradient reaching ``h_next`` by
            every path, and the one reaching ``c_next`` from step t+1 (zeros at the last step).
        cache: from the forward step.

    Returns:
        ``da_x`` (B, 4H) ``[da_i | da_f | da_o | da_c]``; ``(dh_prev, dc_prev)`` (B, H) each;
        ``dW_h`` (H, 4H), this step's share of ``[dW_hi | dW_hf | dW_ho | dW_hc]``.
    """
    dh_next, dc_next = dstate_next
    h_prev, c_prev, i, f, o, c_tilde, tanh_c = cache
    do = dh_next * tanh_c  # (L6') w.r.t. O
    dc = dc_next + dh_next * o * (1.0 - tanh_c * tanh_c)  # (L6') w.r.t. c_next, + path from t+1
    df = dc * c_prev  # (L5') w.r.t. F
    dc_prev = dc * f  # (L5') w.r.t. c_prev
    di = dc * c_tilde  # (L5') w.r.t. I
    dc_tilde = dc * i  # (L5') w.r.t. c_tilde
    da = np.concatenate(
        [
            di * i * (1.0 - i),  # (L1') through sigmoid: s' = s (1 - s)
            df * f * (1.0 - f),  # (L2') through sigmoid
            do * o * (1.0 - o),  # (L3') through sigmoid
            dc_tilde * (1.0 - c_tilde * c_tilde),  # (L4') through tanh
        ],
        axis=1,
    )  # (B, 4H): the gradient of a = a_x + h_prev W_h
    dh_prev = da @ W_h.T  # (L1'-L4') through h_prev W_h, w.r.t. h_prev
    dW_h = h_prev.T @ da  # (L1'-L4') ... w.r.t. W_h
    return da, (dh_prev, dc_prev), dW_h


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One cell kind: its parameter layout and its two step functions (module docstring).

    Attributes:
        name: the key in :data:`CELLS` (and in ``rnn_jax.cells.CELLS``).
        kind: the ``ModelSpec.kind`` it implements.
        gates: gate letters, in parameter order and in the order the steps stack them; a layer
            holds ``W_x{g} (D, H)``, ``W_h{g} (H, H)`` and ``b_{g} (H,)`` for each.
        states: the names of the state arrays, ``("h",)`` or ``("h", "c")``.
        step_forward, step_backward: the step functions.
        reset: for a GRU, ``ModelSpec.gru_reset`` (where the reset gate acts); None otherwise.
    """

    name: str
    kind: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    step_forward: Callable[[np.ndarray, State, np.ndarray], tuple[State, Any]]
    step_backward: Callable[[np.ndarray, State, Any], tuple[np.ndarray, State, np.ndarray]]
    reset: str | None = None


CELLS = {
    cell.name: cell
    for cell in (
        Cell("rnn", "rnn", ("h",), ("h",), rnn_step_forward, rnn_step_backward),
        Cell("gru_before", "gru", ("z", "r", "h"), ("h",), gru_before_step_forward,
             gru_before_step_backward, reset="before"),
        Cell("gru_after", "gru", ("z", "r", "h"), ("h",), gru_after_step_forward,
             gru_after_step_backward, reset="after"),
        Cell("lstm", "lstm", ("i", "f", "o", "c"), ("h", "c"), lstm_step_forward,
             lstm_step_backward),
    )
}  # fmt: skip


def cell_for(spec: Any) -> Cell:
    """The cell of a ``ModelSpec``: its kind and, for a GRU, where its reset gate acts."""
    for cell in CELLS.values():
        if cell.kind == spec.kind and cell.reset in (None, spec.gru_reset):
            return cell
    raise ValueError(f"no cell for kind {spec.kind!r} with gru_reset {spec.gru_reset!r}")
