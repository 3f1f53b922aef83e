"""Two PyTorch language models that hold our parameters, and the mapping to PyTorch's layout.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, G gates per layer.

Both models are ``nn.Module``s with one interface: ``forward(X, state) -> (logits (T, B, V),
state)``, ``begin_state(batch_size)``, ``to_params()`` and ``named_grads()`` in our layout; the
state is a tuple of ``(L, B, H)`` tensors as in ``numpy_ref``.

Weight mapping (:func:`to_torch_state`, :func:`from_torch_state`), layer ``k``, gates in the
module's order (:data:`experiments.torch_ref.cells.TORCH_CELLS`)::

    weight_ih_l{k} (G*H, D) = [W_x{g}.T for g in nn_gates]
    weight_hh_l{k} (G*H, H) = [W_h{g}.T ...]
    bias_ih_l{k}   (G*H,)   = [b_{g} ...]
    bias_hh_l{k}   (G*H,)   = 0, frozen (requires_grad=False)
    linear.weight  (V, H)   = W_hq.T,   linear.bias (V,) = b_q

``bias_hh`` is frozen at zero so that both models have the same parameters and the same gradient
norm; mapping back adds it to ``b_*`` where the equations allow it and refuses a nonzero GRU
candidate bias ``b_hn``, which sits inside ``r * (...)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from experiments.torch_ref.cells import TORCH_CELLS, TorchCell
from numpy_ref.spec import ModelSpec, Params

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _nn_cell(spec: ModelSpec) -> TorchCell:
    cell = TORCH_CELLS[spec.cell.name]
    if cell.nn_module is None:
        raise ValueError(
            f"PyTorch has no nn module for the {spec.cell.name} cell (nn.GRU applies the reset "
            f"gate after the recurrent product); the book's GRU (gru_reset='before') exists in "
            f"PyTorch only as the scratch model: use --torch-model scratch, or --gru-reset after "
            f"for nn.GRU"
        )
    return cell


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def to_torch_state(spec: ModelSpec, params: Params) -> dict[str, np.ndarray]:
    """Our parameter dict -> a :class:`ConciseLM` ``state_dict`` of NumPy arrays (see above)."""
    gates = _nn_cell(spec).nn_gates
    out: dict[str, np.ndarray] = {}
    for k, layer in enumerate(params["layers"]):
        b = np.concatenate([np.asarray(layer[f"b_{g}"]) for g in gates])
        out[f"rnn.weight_ih_l{k}"] = np.concatenate([np.asarray(layer[f"W_x{g}"]).T for g in gates])
        out[f"rnn.weight_hh_l{k}"] = np.concatenate([np.asarray(layer[f"W_h{g}"]).T for g in gates])
        out[f"rnn.bias_ih_l{k}"] = b
        out[f"rnn.bias_hh_l{k}"] = np.zeros_like(b)
    out["linear.weight"] = np.asarray(params["W_hq"]).T
    out["linear.bias"] = np.asarray(params["b_q"])
    return out


def from_torch_state(spec: ModelSpec, state: dict[str, Any]) -> Params:
    """A :class:`ConciseLM` ``state_dict`` (tensors or arrays) -> our parameter dict.

    ``bias_hh`` is added to ``bias_ih`` where the model only uses their sum; a nonzero one inside
    another product (``nn_bias_inside``: the GRU candidate's ``b_hn``) has no counterpart in our
    parameters and is refused.
    """
    cell = _nn_cell(spec)
    arrays = {key: _to_numpy(value) for key, value in state.items()}
    H = spec.num_hiddens
    layers = []
    for k in range(spec.num_layers):
        w_ih, w_hh = arrays[f"rnn.weight_ih_l{k}"], arrays[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = arrays[f"rnn.bias_ih_l{k}"], arrays[f"rnn.bias_hh_l{k}"]
        layer = {}
        for i, g in enumerate(cell.nn_gates):
            rows = slice(i * H, (i + 1) * H)
            if g in cell.nn_bias_inside and np.any(b_hh[rows] != 0):
                raise ValueError(
                    f"rnn.bias_hh_l{k} has a nonzero candidate part b_hn (max |b_hn| = "
                    f"{np.abs(b_hh[rows]).max():.3g}); our {spec.cell.name} has no such "
                    f"parameter. Train with bias_hh frozen at zero, as ConciseLM does."
                )
            layer[f"W_x{g}"] = w_ih[rows].T.copy()
            layer[f"W_h{g}"] = w_hh[rows].T.copy()
            layer[f"b_{g}"] = b_ih[rows] + b_hh[rows]
        layers.append({key: layer[key] for key in spec.layer_keys()})
    return {
        "layers": layers,
        "W_hq": arrays["linear.weight"].T.copy(),
        "b_q": arrays["linear.bias"].copy(),
    }


def _one_hot(X: Any, vocab_size: int, dtype: Any) -> Any:
    """X int (B, T) -> one-hot inputs (T, B, V), time-major as the book's models."""
    return nn.functional.one_hot(X.T.long(), vocab_size).to(dtype)


def _zero_state(spec: ModelSpec, batch_size: int, like: Any) -> tuple[Any, ...]:
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    return tuple(
        torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(spec.num_states)
    )


class ScratchLM(nn.Module):
    """The book's from-scratch model: per layer an ``nn.ParameterDict`` with our keys, the time
    loop of the book over the cell's scratch step; a copy of ``params`` (dtype kept)."""

    def __init__(self, spec: ModelSpec, params: Params, device: Any = None) -> None:
        super().__init__()
        self.spec = spec
        self.step = TORCH_CELLS[spec.cell.name].step

        def parameter(value: Any) -> nn.Parameter:
            return nn.Parameter(torch.tensor(np.asarray(value), device=device))

        self.layers = nn.ModuleList(
            nn.ParameterDict({key: parameter(layer[key]) for key in spec.layer_keys()})
            for layer in params["layers"]
        )
        self.W_hq = parameter(params["W_hq"])
        self.b_q = parameter(params["b_q"])

    def begin_state(self, batch_size: int) -> tuple[Any, ...]:
        return _zero_state(self.spec, batch_size, self.W_hq)

    def forward(self, X: Any, state: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """X int (B, T), state tuple of (L, B, H) -> logits (T, B, V), new state."""
        inputs = _one_hot(X, self.spec.vocab_size, self.W_hq.dtype)  # (T, B, V)
        finals = []
        for index, p in enumerate(self.layers):
            layer_state = tuple(s[index] for s in state)  # each (B, H)
            outputs = []
            for x in inputs:  # the book's loop over time
                layer_state = self.step(p, x, layer_state)
                outputs.append(layer_state[0])
            inputs = torch.stack(outputs)  # (T, B, H): the input of the next layer
            finals.append(layer_state)
        logits = inputs @ self.W_hq + self.b_q  # (T, B, H) @ (H, V)
        return logits, tuple(torch.stack(s) for s in zip(*finals, strict=True))

    def to_params(self) -> Params:
        return {
            "layers": [{k: _to_numpy(v) for k, v in layer.items()} for layer in self.layers],
            "W_hq": _to_numpy(self.W_hq),
            "b_q": _to_numpy(self.b_q),
        }

    def named_grads(self) -> Params:
        """The gradients, in our parameter layout (NumPy)."""
        return {
            "layers": [{k: _to_numpy(v.grad) for k, v in layer.items()} for layer in self.layers],
            "W_hq": _to_numpy(self.W_hq.grad),
            "b_q": _to_numpy(self.b_q.grad),
        }


class ConciseLM(nn.Module):
    """The book's ``RNNModel``: a PyTorch recurrent layer, one-hot inputs, a Linear output,
    loaded with ``params`` mapped (:func:`to_torch_state`)."""

    def __init__(self, spec: ModelSpec, params: Params, device: Any = None) -> None:
        super().__init__()
        layer_cls = _nn_cell(spec).nn_module
        self.spec = spec
        dtype = _DTYPES[np.dtype(np.asarray(params["W_hq"]).dtype)]
        V, H, L = spec.vocab_size, spec.num_hiddens, spec.num_layers
        self.rnn = layer_cls(V, H, L, device=device, dtype=dtype)
        self.linear = nn.Linear(H, V, device=device, dtype=dtype)
        self.load_state_dict({k: torch.tensor(v) for k, v in to_torch_state(spec, params).items()})
        for k in range(L):
            getattr(self.rnn, f"bias_hh_l{k}").requires_grad_(False)

    def begin_state(self, batch_size: int) -> tuple[Any, ...]:
        return _zero_state(self.spec, batch_size, self.linear.weight)

    def forward(self, X: Any, state: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """X int (B, T), state tuple of (L, B, H) -> logits (T, B, V), new state."""
        inputs = _one_hot(X, self.spec.vocab_size, self.linear.weight.dtype)  # (T, B, V)
        hidden = state if len(state) > 1 else state[0]  # nn.LSTM takes (h, c), the others h
        outputs, hidden = self.rnn(inputs, hidden)  # (T, B, H)
        new_state = tuple(hidden) if len(state) > 1 else (hidden,)
        return self.linear(outputs), new_state

    def to_params(self) -> Params:
        return from_torch_state(self.spec, self.state_dict())

    def named_grads(self) -> Params:
        """The gradients, in our parameter layout (NumPy); the frozen bias_hh has none."""
        grads = {name: value.grad for name, value in self.named_parameters()}
        for k in range(self.spec.num_layers):
            grads[f"rnn.bias_hh_l{k}"] = torch.zeros_like(grads[f"rnn.bias_ih_l{k}"])
        return from_torch_state(self.spec, grads)


def make_model(spec: ModelSpec, params: Params, flavour: str, device: Any = None) -> nn.Module:
    """``flavour`` "scratch" (:class:`ScratchLM`) or "concise" (:class:`ConciseLM`)."""
    models = {"scratch": ScratchLM, "concise": ConciseLM}
    if flavour not in models:
        raise ValueError(f"torch model flavour must be 'scratch' or 'concise', got {flavour!r}")
    return models[flavour](spec, params, device)
