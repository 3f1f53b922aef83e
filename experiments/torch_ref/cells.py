"""Every cell of ``numpy_ref.cells.CELLS`` in PyTorch, under the same name.

Letters: B batch, D layer input, H hidden.

For each cell: one step of the book's scratch model (d2l 8.5, 9.1, 9.2), written from the book's
equations on our per-gate parameters (``p["W_xh"]``, ...), and the ``nn`` module that computes the
same function, if PyTorch has one, with the order of its gates in ``weight_ih`` / ``weight_hh``
(``nn.GRU``: r, z, n; ``nn.LSTM``: i, f, g, o). ``nn.GRU`` applies the reset gate *after* the
recurrent product, ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``: it is our ``gru_after``, and
the book's ``gru_before`` exists in PyTorch only as the scratch model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Tensor = torch.Tensor
State = tuple[Tensor, ...]


def rnn_step(p: Any, x: Tensor, state: State) -> State:
    """(R1) on x (B, D) and ``(h,)`` (B, H)."""
    (h,) = state
    return (torch.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"]),)


def _gru_gates(p: Any, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])  # (G1)
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])  # (G2)
    return z, r


def gru_before_step(p: Any, x: Tensor, state: State) -> State:
    """(G1)-(G4), the reset gate before the recurrent product (the book's scratch GRU)."""
    (h,) = state
    z, r = _gru_gates(p, x, h)
    h_tilde = torch.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])  # (G3b)
    return (z * h + (1 - z) * h_tilde,)  # (G4)


def gru_after_step(p: Any, x: Tensor, state: State) -> State:
    """(G1)-(G4), the reset gate after the recurrent product (PyTorch's nn.GRU)."""
    (h,) = state
    z, r = _gru_gates(p, x, h)
    h_tilde = torch.tanh(x @ p["W_xh"] + p["b_h"] + r * (h @ p["W_hh"]))  # (G3a)
    return (z * h + (1 - z) * h_tilde,)  # (G4)


def lstm_step(p: Any, x: Tensor, state: State) -> State:
    """(L1)-(L6) on x (B, D) and ``(h, c)`` (B, H) each."""
    h, c = state
    i = torch.sigmoid(x @ p["W_xi"] + h @ p["W_hi"] + p["b_i"])  # (L1)
    f = torch.sigmoid(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])  # (L2)
    o = torch.sigmoid(x @ p["W_xo"] + h @ p["W_ho"] + p["b_o"])  # (L3)
    c_tilde = torch.tanh(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"])  # (L4)
    c = f * c + i * c_tilde  # (L5)
    return o * torch.tanh(c), c  # (L6)


@dataclass(frozen=True)
class TorchCell:
    """A cell in PyTorch.

    Attributes:
        step: ``step(p, x, state) -> state``, one step of the scratch model.
        nn_module: the ``nn`` recurrent layer computing the same function, or None.
        nn_gates: our gate letters in the row order of the module's stacked weights.
        nn_bias_inside: gates whose ``bias_hh`` sits inside another gate's product (the GRU
            candidate's ``b_hn``, multiplied by r): it cannot be folded into our ``b_g``.
    """

    step: Callable[[Any, Tensor, State], State]
    nn_module: type[nn.Module] | None = None
    nn_gates: tuple[str, ...] = ()
    nn_bias_inside: tuple[str, ...] = ()


TORCH_CELLS = {
    "rnn": TorchCell(rnn_step, nn.RNN, ("h",)),
    "gru_before": TorchCell(gru_before_step),
    "gru_after": TorchCell(gru_after_step, nn.GRU, ("r", "z", "h"), nn_bias_inside=("h",)),
    "lstm": TorchCell(lstm_step, nn.LSTM, ("i", "f", "c", "o")),
}
