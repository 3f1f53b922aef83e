"""The PyTorch comparison: the book's models in PyTorch, started from our weights, trained as ours.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, G gates per layer (1 rnn, 3 gru, 4 lstm).

Two kinds of model, both ``nn.Module``s with the same interface (``forward(X, state) ->
(logits (T, B, V), state)`` and ``begin_state(batch_size)``, the state a tuple of ``(L, B, H)``
tensors as in ``numpy_ref``):

- :class:`ScratchLM`, the book's from-scratch models written in PyTorch from the book's equations
  (d2l 8.5, 9.1, 9.2), holding our parameter dict as it is (``W_xh``, ``W_hh``, ``b_h``, ...);
  it covers rnn, gru (both reset variants) and lstm, one or several layers;
- :class:`ConciseLM`, PyTorch's ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a one-hot input and a
  ``Linear`` output, as the book's concise sections (d2l 8.6, 9.1.3, 9.2.3, 9.3).

Weight mapping (:func:`to_torch_state`, :func:`from_torch_state`), layer ``k``::

    weight_ih_l{k} (G*H, D) = [W_x{g}.T for g in torch's gate order]
    weight_hh_l{k} (G*H, H) = [W_h{g}.T ...]
    bias_ih_l{k}   (G*H,)   = [b_{g} ...]
    bias_hh_l{k}   (G*H,)   = 0, frozen (requires_grad=False)
    linear.weight  (V, H)   = W_hq.T,   linear.bias (V,) = b_q

with torch's gate order GRU ``r, z, n`` (our ``r, z, h``) and LSTM ``i, f, g, o`` (our ``i, f, c,
o``). ``nn.GRU`` applies the reset gate *after* the recurrent product, ``n = tanh(W_in x + b_in +
r * (W_hn h + b_hn))``: it is our ``gru_reset="after"``, and a ``"before"`` GRU (the book's) only
exists as :class:`ScratchLM`. ``bias_hh`` is frozen at zero so that the two models have the same
parameters and the same gradient norm; mapping back adds it to ``b_*`` where the equations allow it
(rnn, lstm, the r and z gates of a gru) and refuses a nonzero ``b_hn``.

Training follows the book and ``numpy_ref`` exactly: mean cross-entropy over the ``B*T`` targets
in time-major order, the book's clipping rule ``g <- g * min(1, theta / ||g||)`` (written out:
``torch.nn.utils.clip_grad_norm_`` divides by ``||g|| + 1e-6`` instead, see :func:`clip_gradients`),
plain SGD ``p <- p - lr * g``, the state detached between sequential minibatches and zeroed for
every random one.

PyTorch is an optional extra; this module imports it on first use (:func:`require_torch`), so
the rest of ``experiments`` works without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from numpy_ref.generation import generate
from numpy_ref.spec import ModelSpec, Params
from numpy_ref.training import EpochStats, run_epoch

TORCH_GATES = {"rnn": ("h",), "gru": ("r", "z", "h"), "lstm": ("i", "f", "c", "o")}
INSTALL_HINT = "pip install -e '.[torch]' (the pinned CPU build)"


class TorchUnavailableError(ImportError):
    """PyTorch is not installed (it is an optional extra)."""


def require_torch() -> Any:
    """Import and return ``torch``, or raise :class:`TorchUnavailableError` saying how to get it."""
    try:
        import torch
    except ImportError as err:
        raise TorchUnavailableError(
            f"PyTorch is not installed (the torch comparison is an optional extra): {INSTALL_HINT}"
        ) from err
    return torch


def torch_dtype(dtype: Any) -> Any:
    torch = require_torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)
    ]


def resolve_device(device: str | None = None) -> Any:
    """A ``torch.device``: ``None`` is the book's ``try_gpu()`` (first GPU, else the CPU).

    Accepts ``cpu``, ``gpu`` / ``cuda`` (the first GPU) and ``cuda:N``.
    """
    torch = require_torch()
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    name = "cuda:0" if device in ("gpu", "cuda") else device
    try:
        resolved = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"--device {device!r} is not a PyTorch device: use cpu, cuda or cuda:N"
        ) from err
    if resolved.type == "cuda":
        count = torch.cuda.device_count()
        index = resolved.index or 0
        if index >= count:
            raise ValueError(
                f"--device {device!r}: PyTorch sees {count} GPU(s) here; use --device cpu"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"--device {device!r} is not supported: use cpu, cuda or cuda:N")
    return resolved


def device_name(device: Any) -> str:
    """The book's device name, with the index always written: ``cpu:0``, ``cuda:0``."""
    return f"{device.type}:{device.index or 0}"


# --- weight mapping ------------------------------------------------------------------------------


def to_torch_state(spec: ModelSpec, params: Params) -> dict[str, np.ndarray]:
    """Our parameter dict -> a :class:`ConciseLM` ``state_dict`` of NumPy arrays (see above)."""
    out: dict[str, np.ndarray] = {}
    gates = TORCH_GATES[spec.kind]
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

    ``bias_hh`` is added to ``bias_ih`` where the model only uses their sum (all of rnn and lstm,
    the r and z gates of gru); the gru candidate's ``b_hn`` sits inside ``r * (...)`` and has no
    counterpart in our parameters, so a nonzero one is refused.
    """
    arrays = {key: _to_numpy(value) for key, value in state.items()}
    gates = TORCH_GATES[spec.kind]
    H = spec.num_hiddens
    layers = []
    for k in range(spec.num_layers):
        w_ih, w_hh = arrays[f"rnn.weight_ih_l{k}"], arrays[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = arrays[f"rnn.bias_ih_l{k}"], arrays[f"rnn.bias_hh_l{k}"]
        layer = {}
        for i, g in enumerate(gates):
            rows = slice(i * H, (i + 1) * H)
            if spec.kind == "gru" and g == "h" and np.any(b_hh[rows] != 0):
                raise ValueError(
                    f"rnn.bias_hh_l{k} has a nonzero candidate part b_hn (max |b_hn| = "
                    f"{np.abs(b_hh[rows]).max():.3g}); our GRU has no such parameter. Train with "
                    f"bias_hh frozen at zero, as ConciseLM does."
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


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# --- models --------------------------------------------------------------------------------------


def _nn() -> Any:
    return require_torch().nn


def ScratchLM(spec: ModelSpec, params: Params, device: Any = None) -> Any:
    """The book's from-scratch model in PyTorch, holding a copy of ``params`` (dtype kept)."""
    return _scratch_class()(spec, params, device)


def ConciseLM(spec: ModelSpec, params: Params, device: Any = None) -> Any:
    """``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` + ``nn.Linear``, loaded with ``params`` mapped."""
    return _concise_class()(spec, params, device)


def make_model(spec: ModelSpec, params: Params, flavour: str, device: Any = None) -> Any:
    """``flavour`` "scratch" (:func:`ScratchLM`) or "concise" (:func:`ConciseLM`)."""
    if flavour == "scratch":
        return ScratchLM(spec, params, device)
    if flavour == "concise":
        return ConciseLM(spec, params, device)
    raise ValueError(f"torch model flavour must be 'scratch' or 'concise', got {flavour!r}")


_CLASSES: dict[str, type] = {}


def _scratch_class() -> type:
    if "scratch" in _CLASSES:
        return _CLASSES["scratch"]
    torch = require_torch()
    nn = torch.nn

    class _ScratchLM(nn.Module):
        """Per layer an ``nn.ParameterDict`` with our keys; the time loop of the book."""

        def __init__(self, spec: ModelSpec, params: Params, device: Any) -> None:
            super().__init__()
            self.spec = spec
            self.layers = nn.ModuleList(
                nn.ParameterDict(
                    {
                        key: nn.Parameter(torch.tensor(np.asarray(layer[key]), device=device))
                        for key in spec.layer_keys()
                    }
                )
                for layer in params["layers"]
            )
            self.W_hq = nn.Parameter(torch.tensor(np.asarray(params["W_hq"]), device=device))
            self.b_q = nn.Parameter(torch.tensor(np.asarray(params["b_q"]), device=device))

        def begin_state(self, batch_size: int) -> tuple[Any, ...]:
            return _zero_state(self.spec, batch_size, self.W_hq)

        def forward(self, X: Any, state: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
            """X int (B, T), state tuple of (L, B, H) -> logits (T, B, V), new state."""
            inputs = torch.nn.functional.one_hot(X.T.long(), self.spec.vocab_size)
            inputs = inputs.to(self.W_hq.dtype)  # (T, B, V)
            finals: list[list[Any]] = [[] for _ in state]
            for layer, p in enumerate(self.layers):
                layer_state = tuple(s[layer] for s in state)  # each (B, H)
                inputs, layer_state = _scratch_layer(self.spec, p, inputs, layer_state)
                for i, s in enumerate(layer_state):
                    finals[i].append(s)
            logits = inputs @ self.W_hq + self.b_q  # (T, B, H) @ (H, V)
            return logits, tuple(torch.stack(f) for f in finals)

        def to_params(self) -> Params:
            return {
                "layers": [{k: _to_numpy(v) for k, v in layer.items()} for layer in self.layers],
                "W_hq": _to_numpy(self.W_hq),
                "b_q": _to_numpy(self.b_q),
            }

        def named_grads(self) -> Params:
            """The gradients, in our parameter layout (NumPy)."""
            return {
                "layers": [
                    {k: _to_numpy(v.grad) for k, v in layer.items()} for layer in self.layers
                ],
                "W_hq": _to_numpy(self.W_hq.grad),
                "b_q": _to_numpy(self.b_q.grad),
            }

    _CLASSES["scratch"] = _ScratchLM
    return _ScratchLM


def _scratch_layer(
    spec: ModelSpec, p: Any, inputs: Any, state: tuple[Any, ...]
) -> tuple[Any, tuple[Any, ...]]:
    """One layer over the sequence: inputs (T, B, D), state of (B, H) -> outputs (T, B, H)."""
    torch = require_torch()
    sigmoid, tanh = torch.sigmoid, torch.tanh
    outputs = []
    if spec.kind == "rnn":
        (h,) = state
        for x in inputs:
            h = tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"])
            outputs.append(h)
        new_state: tuple[Any, ...] = (h,)
    elif spec.kind == "gru":
        (h,) = state
        for x in inputs:
            z = sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
            r = sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
            if spec.gru_reset == "before":
                h_tilde = tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])
            else:
                h_tilde = tanh(x @ p["W_xh"] + p["b_h"] + r * (h @ p["W_hh"]))
            h = z * h + (1 - z) * h_tilde
            outputs.append(h)
        new_state = (h,)
    else:
        h, c = state
        for x in inputs:
            i = sigmoid(x @ p["W_xi"] + h @ p["W_hi"] + p["b_i"])
            f = sigmoid(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])
            o = sigmoid(x @ p["W_xo"] + h @ p["W_ho"] + p["b_o"])
            c_tilde = tanh(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"])
            c = f * c + i * c_tilde
            h = o * tanh(c)
            outputs.append(h)
        new_state = (h, c)
    return torch.stack(outputs), new_state


def _zero_state(spec: ModelSpec, batch_size: int, like: Any) -> tuple[Any, ...]:
    torch = require_torch()
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    return tuple(
        torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(spec.num_states)
    )


def _concise_class() -> type:
    if "concise" in _CLASSES:
        return _CLASSES["concise"]
    torch = require_torch()
    nn = torch.nn

    class _ConciseLM(nn.Module):
        """The book's ``RNNModel``: a PyTorch recurrent layer, one-hot inputs, a Linear output."""

        def __init__(self, spec: ModelSpec, params: Params, device: Any) -> None:
            super().__init__()
            if spec.kind == "gru" and spec.gru_reset == "before":
                raise ValueError(
                    "nn.GRU applies the reset gate after the recurrent product; the book's GRU "
                    "(gru_reset='before') exists in PyTorch only as the scratch model: use "
                    "--torch-model scratch, or --gru-reset after for nn.GRU"
                )
            self.spec = spec
            layer_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[spec.kind]
            dtype = torch_dtype(np.asarray(params["W_hq"]).dtype)
            V, H, L = spec.vocab_size, spec.num_hiddens, spec.num_layers
            self.rnn = layer_cls(V, H, L, device=device, dtype=dtype)
            self.linear = nn.Linear(H, V, device=device, dtype=dtype)
            state = {k: torch.tensor(v) for k, v in to_torch_state(spec, params).items()}
            self.load_state_dict(state)
            for k in range(L):
                getattr(self.rnn, f"bias_hh_l{k}").requires_grad_(False)

        def begin_state(self, batch_size: int) -> tuple[Any, ...]:
            return _zero_state(self.spec, batch_size, self.linear.weight)

        def forward(self, X: Any, state: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
            """X int (B, T), state tuple of (L, B, H) -> logits (T, B, V), new state."""
            inputs = torch.nn.functional.one_hot(X.T.long(), self.spec.vocab_size)
            inputs = inputs.to(self.linear.weight.dtype)  # (T, B, V)
            hidden = state if self.spec.kind == "lstm" else state[0]
            outputs, hidden = self.rnn(inputs, hidden)  # (T, B, H)
            new_state = tuple(hidden) if self.spec.kind == "lstm" else (hidden,)
            return self.linear(outputs), new_state

        def to_params(self) -> Params:
            return from_torch_state(self.spec, self.state_dict())

        def named_grads(self) -> Params:
            """The gradients, in our parameter layout (NumPy); the frozen bias_hh has none."""
            grads = {}
            for name, value in self.named_parameters():
                grads[name] = value.grad
            for k in range(self.spec.num_layers):
                b = grads[f"rnn.bias_ih_l{k}"]
                grads[f"rnn.bias_hh_l{k}"] = torch.zeros_like(b)
            return from_torch_state(self.spec, grads)

    _CLASSES["concise"] = _ConciseLM
    return _ConciseLM


# --- training ------------------------------------------------------------------------------------


def trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def clip_gradients(parameters: Iterable[Any], theta: float) -> Any:
    """The book's rule: scale all gradients by ``min(1, theta / ||g||)``; returns ``||g||``.

    ``torch.nn.utils.clip_grad_norm_`` scales by ``min(1, theta / (||g|| + 1e-6))``: the same up to
    a relative 1e-6/||g||, which float64 parity tests see, so the rule is written out here exactly
    as ``numpy_ref.optim`` and optax's ``clip_by_global_norm`` apply it. The norm stays a tensor
    (no host synchronisation on a GPU).
    """
    torch = require_torch()
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(g * g) for g in grads))
    scale = torch.clamp(theta / norm, max=1.0)  # min(1, theta / ||g||)
    for g in grads:
        g.mul_(scale)
    return norm


def sgd(parameters: Iterable[Any], lr: float) -> None:
    """``p <- p - lr * grad`` (the book's ``sgd`` with ``batch_size=1``: the loss is a mean)."""
    torch = require_torch()
    with torch.no_grad():
        for p in parameters:
            p -= lr * p.grad


def loss_fn(logits: Any, Y: Any) -> Any:
    """Mean cross-entropy: logits (T, B, V), Y int (B, T); row t*B+b pairs with Y[b, t]."""
    torch = require_torch()
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V), Y.T.reshape(-1).long())


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _detach(state: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(s.detach() for s in state)


def _sync(device: Any) -> Any:
    """``sync`` for numpy_ref's ``run_epoch``: wait for queued GPU work before the clock stops."""
    torch = require_torch()
    if device.type == "cuda":
        return lambda _carry: torch.cuda.synchronize(device)
    return None


def loss_and_grads(
    model: Any, X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]
) -> tuple[float, Params, tuple[Any, ...]]:
    """The twin API's ``loss_and_grads`` for a torch model: (loss, grads in our layout, state)."""
    torch = require_torch()
    device = _device_of(model)
    model.zero_grad(set_to_none=True)
    logits, new_state = model(torch.as_tensor(X, device=device), state)
    loss = loss_fn(logits, torch.as_tensor(Y, device=device))
    loss.backward()
    return float(loss.detach()), model.named_grads(), _detach(new_state)


def train_step(
    model: Any, X: Any, Y: Any, state: tuple[Any, ...], lr: float, theta: float
) -> tuple[Any, tuple[Any, ...]]:
    """One minibatch: forward, mean CE, backward, clip to theta, SGD.

    Returns:
        The loss (a detached 0-d tensor, read only when the epoch ends) and the new state.
    """
    params = trainable(model)
    for p in params:
        p.grad = None
    logits, state = model(X, state)
    loss = loss_fn(logits, Y)
    loss.backward()
    clip_gradients(params, theta)
    sgd(params, lr)
    return loss.detach(), state


def train_epoch(
    model: Any,
    loader: Iterable[tuple[np.ndarray, np.ndarray]],
    lr: float,
    theta: float,
    use_random_iter: bool,
) -> tuple[Any, EpochStats]:
    """One epoch with the book's semantics, driven by ``numpy_ref.training.run_epoch``.

    The loop is the one numpy_ref and rnn_jax use: the state zeroed for the first minibatch and,
    with ``use_random_iter``, for every one, otherwise carried with its gradient history cut
    (``detach``); perplexity and tokens/s (wall time, data iteration included) computed the same
    way. The model is updated in place and returned.
    """
    torch = require_torch()
    device = _device_of(model)

    def step(model: Any, X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]):
        X_t, Y_t = torch.as_tensor(X, device=device), torch.as_tensor(Y, device=device)
        loss, state = train_step(model, X_t, Y_t, state, lr, theta)
        return model, loss, state

    return run_epoch(
        step, model, loader, model.begin_state, _detach, use_random_iter, sync=_sync(device)
    )


def evaluate(model: Any, loader: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Perplexity on ``loader``'s data without updating, as ``numpy_ref.training.evaluate``.

    The state is carried across minibatches; a random-sampling loader gets the zero state for
    each one.
    """
    torch = require_torch()
    device = _device_of(model)

    def step(carry: None, X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]):
        logits, state = model(torch.as_tensor(X, device=device), state)
        return carry, loss_fn(logits, torch.as_tensor(Y, device=device)), state

    with torch.no_grad():
        _, stats = run_epoch(
            step, None, loader, model.begin_state, _detach,
            bool(getattr(loader, "use_random_iter", False)),
        )  # fmt: skip
    return float(stats.perplexity)


def predict(prefix: str, num_preds: int, model: Any, vocab: Any) -> str:
    """The book's ``predict_ch8`` through numpy_ref's ``generate``: warm-up, then greedy."""
    torch = require_torch()
    device = _device_of(model)

    def step(token: int, state: tuple[Any, ...]) -> tuple[np.ndarray, tuple[Any, ...]]:
        logits, state = model(torch.tensor([[token]], device=device), state)  # (1, 1, V)
        return logits[0, 0].cpu().numpy(), state

    with torch.no_grad():
        return generate(prefix, num_preds, vocab, step, model.begin_state(1))
