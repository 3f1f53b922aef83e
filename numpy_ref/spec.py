"""Model specification, parameter initialisation and the zero state.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden, L layers.

Parameters are a plain dict (a JAX pytree as is) shared by every implementation::

    {"layers": [layer_0, ..., layer_{L-1}], "W_hq": (H, V), "b_q": (V,)}

where each layer holds, for every gate ``g`` of its kind, ``W_xg (D, H)``, ``W_hg (H, H)`` and
``b_g (H,)``:

    rnn   g in (h,)          H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)
    gru   g in (z, r, h)     update, reset, candidate
    lstm  g in (i, f, o, c)  input, forget, output gates and candidate memory
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("rnn", "gru", "lstm")
GRU_RESETS = ("before", "after")
GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}

Params = dict[str, Any]
State = tuple[Any, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What a model is, independent of any implementation.

    Attributes:
        kind: "rnn", "gru" or "lstm".
        vocab_size: V, the size of the input one-hot and of the output softmax.
        num_hiddens: H, hidden units per layer.
        num_layers: L, stacked recurrent layers (layer l > 0 reads layer l-1's hidden state).
        gru_reset: where the GRU applies its reset gate: "before" the recurrent product, as the
            book's scratch GRU, ``tanh(X W_xh + (R * H) W_hh + b_h)``; or "after" it, as
            PyTorch/cuDNN, ``tanh(X W_xh + b_h + R * (H W_hh))``. Ignored for other kinds.
    """

    kind: str
    vocab_size: int
    num_hiddens: int
    num_layers: int = 1
    gru_reset: str = "before"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ModelSpec.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("vocab_size", "num_hiddens", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelSpec.{name} must be an integer >= 1, got {value!r}")
        if self.gru_reset not in GRU_RESETS:
            raise ValueError(
                f"ModelSpec.gru_reset must be one of {GRU_RESETS}, got {self.gru_reset!r}"
            )

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate letters of one layer, in parameter order."""
        return GATES[self.kind]

    @property
    def num_states(self) -> int:
        """Arrays in the recurrent state: (H,) for rnn and gru, (H, C) for lstm."""
        return 2 if self.kind == "lstm" else 1

    def layer_keys(self) -> tuple[str, ...]:
        """Keys of one layer's dict, in initialisation order."""
        return tuple(key for g in self.gates for key in (f"W_x{g}", f"W_h{g}", f"b_{g}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocab_size": int(self.vocab_size),
            "num_hiddens": int(self.num_hiddens),
            "num_layers": int(self.num_layers),
            "gru_reset": self.gru_reset,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)


def init_params(
    spec: ModelSpec, seed: int = 0, dtype: Any = np.float32, sigma: float = 0.01
) -> Params:
    """Draw the book's initial parameters: weights N(0, sigma^2), biases zero.

    Values are drawn in float64 from ``numpy.random.default_rng(seed)`` in a fixed order (layer
    by layer, gate by gate, ``W_x*`` then ``W_h*``; then ``W_hq``) and cast to ``dtype``, so
    float32 and float64 parameters from one seed differ only by rounding, and every implementation
    (NumPy, JAX, the PyTorch comparison) starts from the same point.

    Args:
        spec: the model.
        seed: seed of the generator.
        dtype: float dtype of every array.
        sigma: standard deviation of the weights.

    Returns:
        The parameter dict of the module docstring.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    rng = np.random.default_rng(seed)
    V, H = spec.vocab_size, spec.num_hiddens

    def normal(*shape: int) -> np.ndarray:
        return (sigma * rng.standard_normal(shape)).astype(dtype)

    layers = []
    for layer in range(spec.num_layers):
        D = V if layer == 0 else H
        params = {}
        for g in spec.gates:
            params[f"W_x{g}"] = normal(D, H)
            params[f"W_h{g}"] = normal(H, H)
            params[f"b_{g}"] = np.zeros(H, dtype)
        layers.append(params)
    return {"layers": layers, "W_hq": normal(H, V), "b_q": np.zeros(V, dtype)}


def check_vocab_size(spec: ModelSpec, vocab: Sized) -> None:
    """Raise ValueError unless ``vocab`` has the ``spec.vocab_size`` tokens of the model."""
    if len(vocab) != spec.vocab_size:
        raise ValueError(
            f"the vocabulary has {len(vocab)} tokens but the model's vocab_size is "
            f"{spec.vocab_size}; use the vocabulary the model was built with "
            f"(ModelSpec(..., vocab_size=len(vocab)))"
        )


def begin_state(spec: ModelSpec, batch_size: int, dtype: Any = np.float32) -> State:
    """The zero state: a tuple of ``spec.num_states`` arrays of shape (L, B, H)."""
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    return tuple(np.zeros(shape, dtype) for _ in range(spec.num_states))


def flatten_params(params: Params) -> dict[str, Any]:
    """``{"layers.0.W_xh": ..., "W_hq": ..., "b_q": ...}``: the checkpoint's key layout."""
    flat = {}
    for i, layer in enumerate(params["layers"]):
        for key, value in layer.items():
            flat[f"layers.{i}.{key}"] = value
    flat["W_hq"] = params["W_hq"]
    flat["b_q"] = params["b_q"]
    return flat


def unflatten_params(flat: dict[str, Any]) -> Params:
    """Inverse of :func:`flatten_params`."""
    layers: dict[int, dict[str, Any]] = {}
    out: Params = {}
    for name, value in flat.items():
        if name.startswith("layers."):
            _, index, key = name.split(".", 2)
            layers.setdefault(int(index), {})[key] = value
        else:
            out[name] = value
    out["layers"] = [layers[i] for i in sorted(layers)]
    return out


def map_params(fn: Callable[..., Any], params: Params, *others: Params) -> Params:
    """Apply ``fn`` leaf by leaf to one or more parameter dicts of the same layout."""
    flats = [flatten_params(o) for o in others]
    return unflatten_params(
        {key: fn(value, *(f[key] for f in flats)) for key, value in flatten_params(params).items()}
    )
