"""One time step of each recurrent cell, forward and backward, as the book writes it; the table.

Letters: B batch, D the step's input size (V for layer 0, whose input is one-hot; H above),
H hidden units.

Every cell offers the two functions of the cs231n RNN layers, a cache out of the forward and into
the backward:

- ``step_forward(x, state_prev, layer) -> (state_next, cache)``;
- ``step_backward(dstate_next, cache, layer) -> (dx, dstate_prev, dlayer)``.

``x`` (B, D) is the step's input, ``layer`` the layer's parameter dict with the book's names
(``W_xh``, ``W_hh``, ``b_h``; GRU ``W_xz``, ...; LSTM ``W_xi``, ...), one matrix per gate.
``state_prev`` and ``state_next`` are tuples of (B, H) arrays, ``(h,)`` for rnn and gru,
``(h, c)`` for lstm. ``dstate_next`` holds the gradient of the loss with respect to
``state_next``: ``dh_next`` by every path, the sum of what reaches ``h_next`` from above and from
step t+1 (B1, formed by the layer's loop in :mod:`numpy_ref.models`), and ``dc_next`` what reaches
``c_next`` from step t+1. The backward returns ``dx`` (B, D), ``dstate_prev`` (the gradient of
``state_prev`` through this step) and ``dlayer``: this step's share of every parameter's
gradient, a dict with the keys of ``layer`` (the layer's loop adds the steps' shares, (B2)).
How a parameter's gradient is assembled from these shares, over time and layers, is in the
docstring of :mod:`numpy_ref.models` (three functions for ``dW_hh``, this module's the last).

The backward walks the forward's lines in reverse, one chain-rule step per line: every gradient
is ``d`` + the name of the forward array it belongs to (``da_h`` for ``a_h``), and each line's
comment names the forward line it goes back through. The numbers in brackets, (R1), (G3b'), ...,
are the equations of docs/bptt.md; a primed number is the backward of that forward equation.

:data:`CELLS` lists the cells, with the same names in the same order as ``rnn_jax.cells.CELLS``;
everything that enumerates kinds (the spec, the models, the tests, the PyTorch mapping) reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

State = tuple[np.ndarray, ...]
Layer = dict[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``; its derivative is ``s (1 - s)``.

    Numerically safe as written: for ``x`` below about -88 (float32) or -709 (float64)
    ``exp(-x)`` overflows to ``inf`` and the result is ``1 / inf = 0``, the true value to within
    the smallest float; for large ``x``, ``exp(-x)`` underflows to 0 and the result is 1. Nothing
    becomes NaN; only NumPy's overflow warning is silenced.
    """
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


# --- vanilla RNN -------------------------------------------------------------------------------


def rnn_step_forward(x: np.ndarray, state_prev: State, layer: Layer) -> tuple[State, tuple]:
    """One step of the vanilla RNN (R1): ``h_next = tanh(x W_xh + h_prev W_hh + b_h)``.

    Args:
        x: (B, D), the step's input.
        state_prev: ``(h_prev,)``, (B, H).
        layer: ``W_xh`` (D, H), ``W_hh`` (H, H), ``b_h`` (H,).

    Returns:
        ``(h_next,)`` (B, H) and the cache for :func:`rnn_step_backward`.
    """
    (h_prev,) = state_prev
    a_h = x @ layer["W_xh"] + h_prev @ layer["W_hh"] + layer["b_h"]  # (R1) (B, H)
    h_next = np.tanh(a_h)  # (R1)
    return (h_next,), (x, h_prev, h_next)


def rnn_step_backward(dstate_next: State, cache: tuple, layer: Layer) -> tuple:
    """Backward of :func:`rnn_step_forward` (R1').

    Args:
        dstate_next: ``(dh_next,)``, (B, H): the gradient reaching ``h_next`` by every path.
        cache: from the forward step.
        layer: the parameters of the forward step.

    Returns:
        ``dx`` (B, D); ``(dh_prev,)`` (B, H); this step's share of ``dW_xh``, ``dW_hh``,
        ``db_h``, as a dict with the keys of ``layer``.
    """
    (dh_next,) = dstate_next
    x, h_prev, h_next = cache
    da_h = dh_next * (1.0 - h_next * h_next)  # h_next = tanh(a_h): tanh' = 1 - tanh^2
    dW_xh = x.T @ da_h  # a_h = x W_xh + h_prev W_hh + b_h, w.r.t. W_xh
    dW_hh = h_prev.T @ da_h  # ... w.r.t. W_hh
    db_h = da_h.sum(axis=0)  # ... w.r.t. b_h, added to each of the B rows
    dx = da_h @ layer["W_xh"].T  # ... w.r.t. x
    dh_prev = da_h @ layer["W_hh"].T  # ... w.r.t. h_prev
    return dx, (dh_prev,), {"W_xh": dW_xh, "W_hh": dW_hh, "b_h": db_h}


# --- GRU ---------------------------------------------------------------------------------------


def gru_step_forward(
    x: np.ndarray, state_prev: State, layer: Layer, reset: str = "before"
) -> tuple[State, tuple]:
    """One GRU step; ``reset`` says where the reset gate acts, the two variants' one difference::

        Z       = sigmoid(x W_xz + h_prev W_hz + b_z)            (G1) update gate
        R       = sigmoid(x W_xr + h_prev W_hr + b_r)            (G2) reset gate
        h_tilde = tanh(x W_xh + (R * h_prev) W_hh + b_h)         (G3b) "before": the book's
        h_tilde = tanh(x W_xh + b_h + R * (h_prev W_hh))         (G3a) "after": PyTorch's, cuDNN's
        h_next  = Z * h_prev + (1 - Z) * h_tilde                 (G4)

    Args:
        x: (B, D), the step's input.
        state_prev: ``(h_prev,)``, (B, H).
        layer: ``W_x{g}`` (D, H), ``W_h{g}`` (H, H), ``b_{g}`` (H,) for g in z, r, h.
        reset: "before" (the input of ``W_hh`` is ``R * h_prev``) or "after" (``R`` scales the
            output of ``W_hh``).

    Returns:
        ``(h_next,)`` (B, H) and the cache for :func:`gru_step_backward`.
    """
    (h_prev,) = state_prev
    a_z = x @ layer["W_xz"] + h_prev @ layer["W_hz"] + layer["b_z"]  # (G1)
    z = sigmoid(a_z)  # (G1)
    a_r = x @ layer["W_xr"] + h_prev @ layer["W_hr"] + layer["b_r"]  # (G2)
    r = sigmoid(a_r)  # (G2)
    if reset == "before":
        rh = r * h_prev  # (G3b) the input of W_hh
        a_h = x @ layer["W_xh"] + rh @ layer["W_hh"] + layer["b_h"]  # (G3b)
        at_W_hh = rh
    else:
        hW = h_prev @ layer["W_hh"]  # (G3a) the output of W_hh
        a_h = x @ layer["W_xh"] + layer["b_h"] + r * hW  # (G3a)
        at_W_hh = hW
    h_tilde = np.tanh(a_h)  # (G3)
    h_next = z * h_prev + (1.0 - z) * h_tilde  # (G4)
    return (h_next,), (x, h_prev, z, r, at_W_hh, h_tilde)


def gru_step_backward(
    dstate_next: State, cache: tuple, layer: Layer, reset: str = "before"
) -> tuple:
    """Backward of :func:`gru_step_forward` ((G4'), (G3b') or (G3a'), (G2'), (G1')).

    Args:
        dstate_next: ``(dh_next,)``, (B, H): the gradient reaching ``h_next`` by every path.
        cache: from the forward step.
        layer: the parameters of the forward step.
        reset: as in the forward step.

    Returns:
        ``dx`` (B, D); ``(dh_prev,)`` (B, H); this step's share of every parameter's gradient,
        a dict with the keys of ``layer``.
    """
    (dh_next,) = dstate_next
    x, h_prev, z, r, at_W_hh, h_tilde = cache
    dz = dh_next * (h_prev - h_tilde)  # (G4') h_next = Z h_prev + (1 - Z) h_tilde, w.r.t. Z
    dh_tilde = dh_next * (1.0 - z)  # (G4') ... w.r.t. h_tilde
    dh_prev = dh_next * z  # (G4') ... w.r.t. h_prev: the direct path
    da_h = dh_tilde * (1.0 - h_tilde * h_tilde)  # (G3') h_tilde = tanh(a_h)
    if reset == "before":
        rh = at_W_hh
        drh = da_h @ layer["W_hh"].T  # (G3b') a_h = x W_xh + rh W_hh + b_h, w.r.t. rh
        dW_hh = rh.T @ da_h  # (G3b') ... w.r.t. W_hh
        dr = drh * h_prev  # (G3b') rh = R * h_prev, w.r.t. R
        dh_prev += drh * r  # (G3b') ... w.r.t. h_prev
    else:
        hW = at_W_hh
        dr = da_h * hW  # (G3a') a_h = x W_xh + b_h + R * hW, w.r.t. R
        dhW = da_h * r  # (G3a') ... w.r.t. hW
        dW_hh = h_prev.T @ dhW  # (G3a') hW = h_prev W_hh, w.r.t. W_hh
        dh_prev += dhW @ layer["W_hh"].T  # (G3a') ... w.r.t. h_prev
    da_r = dr * r * (1.0 - r)  # (G2') R = sigmoid(a_r): sigmoid' = s (1 - s)
    dh_prev += da_r @ layer["W_hr"].T  # (G2') a_r = x W_xr + h_prev W_hr + b_r, w.r.t. h_prev
    da_z = dz * z * (1.0 - z)  # (G1') Z = sigmoid(a_z)
    dh_prev += da_z @ layer["W_hz"].T  # (G1') a_z = x W_xz + h_prev W_hz + b_z, w.r.t. h_prev
    # (G1'-G3') x W_xg + b_g is in every gate's a_g: x's gradient is a sum of three terms; W_xg's
    # is x^T da_g (each of the B rows used it once), b_g's the sum of da_g's rows
    dx = da_z @ layer["W_xz"].T + da_r @ layer["W_xr"].T + da_h @ layer["W_xh"].T
    dlayer = {
        "W_xz": x.T @ da_z, "W_hz": h_prev.T @ da_z, "b_z": da_z.sum(axis=0),  # (G1')
        "W_xr": x.T @ da_r, "W_hr": h_prev.T @ da_r, "b_r": da_r.sum(axis=0),  # (G2')
        "W_xh": x.T @ da_h, "W_hh": dW_hh, "b_h": da_h.sum(axis=0),  # (G3')
    }  # fmt: skip
    return dx, (dh_prev,), dlayer


# --- LSTM --------------------------------------------------------------------------------------


def lstm_step_forward(x: np.ndarray, state_prev: State, layer: Layer) -> tuple[State, tuple]:
    """One LSTM step, (L1)-(L6)::

        I       = sigmoid(x W_xi + h_prev W_hi + b_i)       (L1) input gate
        F       = sigmoid(x W_xf + h_prev W_hf + b_f)       (L2) forget gate
        O       = sigmoid(x W_xo + h_prev W_ho + b_o)       (L3) output gate
        c_tilde = tanh(x W_xc + h_prev W_hc + b_c)          (L4) candidate memory
        c_next  = F * c_prev + I * c_tilde                  (L5)
        h_next  = O * tanh(c_next)                          (L6)

    Args:
        x: (B, D), the step's input.
        state_prev: ``(h_prev, c_prev)``, each (B, H); ``c`` is the memory cell.
        layer: ``W_x{g}`` (D, H), ``W_h{g}`` (H, H), ``b_{g}`` (H,) for g in i, f, o, c.

    Returns:
        ``(h_next, c_next)`` (B, H) each and the cache for :func:`lstm_step_backward`.
    """
    h_prev, c_prev = state_prev
    a_i = x @ layer["W_xi"] + h_prev @ layer["W_hi"] + layer["b_i"]  # (L1)
    i = sigmoid(a_i)  # (L1)
    a_f = x @ layer["W_xf"] + h_prev @ layer["W_hf"] + layer["b_f"]  # (L2)
    f = sigmoid(a_f)  # (L2)
    a_o = x @ layer["W_xo"] + h_prev @ layer["W_ho"] + layer["b_o"]  # (L3)
    o = sigmoid(a_o)  # (L3)
    a_c = x @ layer["W_xc"] + h_prev @ layer["W_hc"] + layer["b_c"]  # (L4)
    c_tilde = np.tanh(a_c)  # (L4)
    c_next = f * c_prev + i * c_tilde  # (L5)
    tanh_c = np.tanh(c_next)  # (L6)
    h_next = o * tanh_c  # (L6)
    return (h_next, c_next), (x, h_prev, c_prev, i, f, o, c_tilde, tanh_c)


def lstm_step_backward(dstate_next: State, cache: tuple, layer: Layer) -> tuple:
    """Backward of :func:`lstm_step_forward`, (L6') to (L1').

    Args:
        dstate_next: ``(dh_next, dc_next)``, each (B, H): the gradient reaching ``h_next`` by
            every path, and the one reaching ``c_next`` from step t+1 (zeros at the last step).
        cache: from the forward step.
        layer: the parameters of the forward step.

    Returns:
        ``dx`` (B, D); ``(dh_prev, dc_prev)`` (B, H) each; this step's share of every
        parameter's gradient, a dict with the keys of ``layer``.
    """
    dh_next, dc_next = dstate_next
    x, h_prev, c_prev, i, f, o, c_tilde, tanh_c = cache
    do = dh_next * tanh_c  # (L6') h_next = O * tanh_c, w.r.t. O
    dtanh_c = dh_next * o  # (L6') ... w.r.t. tanh_c
    dc_next = dc_next + dtanh_c * (1.0 - tanh_c * tanh_c)  # (L6') tanh_c = tanh(c_next), + t+1
    df = dc_next * c_prev  # (L5') c_next = F * c_prev + I * c_tilde, w.r.t. F
    dc_prev = dc_next * f  # (L5') ... w.r.t. c_prev
    di = dc_next * c_tilde  # (L5') ... w.r.t. I
    dc_tilde = dc_next * i  # (L5') ... w.r.t. c_tilde
    da_i = di * i * (1.0 - i)  # (L1') I = sigmoid(a_i): sigmoid' = s (1 - s)
    da_f = df * f * (1.0 - f)  # (L2') F = sigmoid(a_f)
    da_o = do * o * (1.0 - o)  # (L3') O = sigmoid(a_o)
    da_c = dc_tilde * (1.0 - c_tilde * c_tilde)  # (L4') c_tilde = tanh(a_c)
    # (L1'-L4') a_g = x W_xg + h_prev W_hg + b_g for g in i, f, o, c: x and h_prev feed all four
    # gates, so their gradients are sums of four terms; W_xg's is x^T da_g (each of the B rows
    # used it once), W_hg's h_prev^T da_g, b_g's the sum of da_g's rows
    dx = (
        da_i @ layer["W_xi"].T
        + da_f @ layer["W_xf"].T
        + da_o @ layer["W_xo"].T
        + da_c @ layer["W_xc"].T
    )
    dh_prev = (
        da_i @ layer["W_hi"].T
        + da_f @ layer["W_hf"].T
        + da_o @ layer["W_ho"].T
        + da_c @ layer["W_hc"].T
    )
    dlayer = {
        "W_xi": x.T @ da_i, "W_hi": h_prev.T @ da_i, "b_i": da_i.sum(axis=0),  # (L1')
        "W_xf": x.T @ da_f, "W_hf": h_prev.T @ da_f, "b_f": da_f.sum(axis=0),  # (L2')
        "W_xo": x.T @ da_o, "W_ho": h_prev.T @ da_o, "b_o": da_o.sum(axis=0),  # (L3')
        "W_xc": x.T @ da_c, "W_hc": h_prev.T @ da_c, "b_c": da_c.sum(axis=0),  # (L4')
    }  # fmt: skip
    return dx, (dh_prev, dc_prev), dlayer


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One cell kind: its parameter layout and its two step functions (module docstring).

    Attributes:
        name: the key in :data:`CELLS` (and in ``rnn_jax.cells.CELLS``).
        kind: the ``ModelSpec.kind`` it implements.
        gates: gate letters, in parameter order; a layer holds ``W_x{g} (D, H)``,
            ``W_h{g} (H, H)`` and ``b_{g} (H,)`` for each.
        states: the names of the state arrays, ``("h",)`` or ``("h", "c")``.
        step_forward, step_backward: the step functions.
        reset: for a GRU, ``ModelSpec.gru_reset`` (where the reset gate acts); None otherwise.
    """

    name: str
    kind: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    step_forward: Callable[[np.ndarray, State, Layer], tuple[State, Any]]
    step_backward: Callable[[State, Any, Layer], tuple[np.ndarray, State, Layer]]
    reset: str | None = None


CELLS = {
    cell.name: cell
    for cell in (
        Cell("rnn", "rnn", ("h",), ("h",), rnn_step_forward, rnn_step_backward),
        Cell(
            "gru_before",
            "gru",
            ("z", "r", "h"),
            ("h",),
            partial(gru_step_forward, reset="before"),
            partial(gru_step_backward, reset="before"),
            reset="before",
        ),
        Cell(
            "gru_after",
            "gru",
            ("z", "r", "h"),
            ("h",),
            partial(gru_step_forward, reset="after"),
            partial(gru_step_backward, reset="after"),
            reset="after",
        ),
        Cell(
            "lstm", "lstm", ("i", "f", "o", "c"), ("h", "c"), lstm_step_forward, lstm_step_backward
        ),
    )
}


def cell_for(spec: Any) -> Cell:
    """The cell of a ``ModelSpec``: its kind and, for a GRU, where its reset gate acts."""
    for cell in CELLS.values():
        if cell.kind == spec.kind and cell.reset in (None, spec.gru_reset):
            return cell
    raise ValueError(f"no cell for kind {spec.kind!r} with gru_reset {spec.gru_reset!r}")
