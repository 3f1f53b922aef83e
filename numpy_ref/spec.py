"""Model specification, parameter layout and initialisation, the zero state, and their checks.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden, L layers.

Parameters are a plain dict (a JAX pytree as is) shared by every implementation::

    {"layers": [layer_0, ..., layer_{L-1}], "W_hq": (H, V), "b_q": (V,)}

where each layer holds, for every gate ``g`` of its cell (:data:`numpy_ref.cells.CELLS`),
``W_xg (D, H)``, ``W_hg (H, H)`` and ``b_g (H,)``:

    rnn   g in (h,)          H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)
    gru   g in (z, r, h)     update, reset, candidate
    lstm  g in (i, f, o, c)  input, forget, output gates and candidate memory

The state is a tuple of ``(L, B, H)`` arrays, one per entry of the cell's ``states``.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpy_ref.cells import CELLS, Cell, cell_for
from numpy_ref.checks import check_int

KINDS = tuple(dict.fromkeys(cell.kind for cell in CELLS.values()))
GRU_RESETS = tuple(cell.reset for cell in CELLS.values() if cell.kind == "gru")
GATES = {cell.kind: cell.gates for cell in CELLS.values()}

Params = dict[str, Any]
State = tuple[Any, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What a model is, independent of any implementation.

    Attributes:
        kind: "rnn", "gru" or "lstm" (:data:`KINDS`).
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
            check_int(f"ModelSpec.{name}", getattr(self, name))
        if self.gru_reset not in GRU_RESETS:
            raise ValueError(
                f"ModelSpec.gru_reset must be one of {GRU_RESETS}, got {self.gru_reset!r}"
            )

    @property
    def cell(self) -> Cell:
        """The entry of :data:`numpy_ref.cells.CELLS` that this spec runs."""
        return cell_for(self)

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate letters of one layer, in parameter order."""
        return self.cell.gates

    @property
    def num_states(self) -> int:
        """Arrays in the recurrent state: (H,) for rnn and gru, (H, C) for lstm."""
        return len(self.cell.states)

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


def param_dtype(params: Params) -> np.dtype:
    """The floating dtype of a parameter dict (every array shares it: :func:`check_params`)."""
    return np.dtype(params["W_hq"].dtype)


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


# --- the gates side by side: rnn_jax's packed form ----------------------------------------------


def stack_layer(cell: Cell, layer: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer's per-gate arrays side by side, in the cell's gate order (``rnn_jax`` trains
    in this form; numpy_ref keeps every gate its own matrix).

    Returns:
        ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H,), G the number of gates.
    """

    def stack(prefix: str) -> np.ndarray:
        return np.concatenate([layer[f"{prefix}{g}"] for g in cell.gates], axis=-1)

    return stack("W_x"), stack("W_h"), stack("b_")


def unstack_layer(cell: Cell, W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray) -> Params:
    """Inverse of :func:`stack_layer`: the per-gate dict, in parameter order."""
    G = len(cell.gates)
    parts = {
        "W_x": np.split(W_x, G, axis=-1),
        "W_h": np.split(W_h, G, axis=-1),
        "b_": np.split(b, G, axis=-1),
    }
    return {
        f"{prefix}{g}": np.ascontiguousarray(parts[prefix][i])
        for i, g in enumerate(cell.gates)
        for prefix in ("W_x", "W_h", "b_")
    }


# --- checks of the layout ----------------------------------------------------------------------


def check_params(spec: ModelSpec, params: Params) -> None:
    """Raise ValueError unless ``params`` has exactly the keys and shapes that ``spec`` asks for.

    The layout is that of :func:`init_params`: per layer ``W_xg (D, H)``, ``W_hg (H, H)``,
    ``b_g (H,)`` for every gate ``g``; then ``W_hq (H, V)`` and ``b_q (V,)``. Every array must
    have one floating dtype.
    """
    V, H = spec.vocab_size, spec.num_hiddens
    fix = "build them with init_params(spec) or load a checkpoint saved for this spec"
    if not isinstance(params, dict) or set(params) != {"layers", "W_hq", "b_q"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must be a dict with keys ['W_hq', 'b_q', 'layers'], got {found}")
    layers = params["layers"]
    if len(layers) != spec.num_layers:
        raise ValueError(
            f"params has {len(layers)} layers but {spec} asks for {spec.num_layers}; {fix}"
        )
    expected: dict[str, tuple[int, ...]] = {}
    found_shapes = {"W_hq": np.shape(params["W_hq"]), "b_q": np.shape(params["b_q"])}
    for layer_index, layer in enumerate(layers):
        D = V if layer_index == 0 else H
        keys = spec.layer_keys()
        if set(layer) != set(keys):
            raise ValueError(
                f"params['layers'][{layer_index}] has keys {sorted(layer)}, "
                f"expected {sorted(keys)} for kind {spec.kind!r}; {fix}"
            )
        for g in spec.gates:
            expected[f"layers.{layer_index}.W_x{g}"] = (D, H)
            expected[f"layers.{layer_index}.W_h{g}"] = (H, H)
            expected[f"layers.{layer_index}.b_{g}"] = (H,)
        for key, value in layer.items():
            found_shapes[f"layers.{layer_index}.{key}"] = np.shape(value)
    expected.update({"W_hq": (H, V), "b_q": (V,)})  # checked in flatten_params order
    for name, shape in expected.items():
        if found_shapes[name] != shape:
            raise ValueError(
                f"params {name!r} has shape {found_shapes[name]}, expected {shape} "
                f"for {spec}; {fix}"
            )
    dtypes = {np.dtype(v.dtype) for v in flatten_params(params).values()}
    if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
        raise ValueError(
            f"params must all share one floating dtype (float32 or float64), got "
            f"{sorted(str(d) for d in dtypes)}; cast them with "
            f"map_params(lambda p: p.astype(dtype), params)"
        )


def check_tokens(tokens: Any, vocab_size: int, name: str) -> np.ndarray:
    """``tokens`` as an int array (B, T) of indices in ``[0, vocab_size)``, or ValueError."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(
            f"{name} must be a (batch_size, num_steps) array with both sizes >= 1, "
            f"got shape {tokens.shape}"
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token indices, got dtype {tokens.dtype}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} holds token indices in [{low}, {high}], outside [0, {vocab_size - 1}] of a "
            f"vocabulary of {vocab_size}; index the text with the vocabulary the model was "
            f"built for"
        )
    return tokens


def check_state(spec: ModelSpec, state: State, batch_size: int, dtype: np.dtype) -> State:
    """``state`` as a tuple of (L, B, H) arrays of ``dtype``, or ValueError naming the fix."""
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    if not isinstance(state, (tuple, list)) or len(state) != spec.num_states:
        raise ValueError(
            f"state must be a tuple of {spec.num_states} array(s) for kind {spec.kind!r}, "
            f"got {type(state).__name__} {state!r:.80}; start from begin_state(spec, batch_size)"
        )
    arrays = tuple(np.asarray(s, dtype=dtype) for s in state)
    for s in arrays:
        if s.shape != shape:
            raise ValueError(
                f"state arrays must have shape (L, B, H) = {shape} for this spec and batch, got "
                f"{s.shape}; start from begin_state(spec, batch_size={batch_size})"
            )
    return arrays


def check_vocab_size(spec: ModelSpec, vocab: Sized) -> None:
    """Raise ValueError unless ``vocab`` has the ``spec.vocab_size`` tokens of the model."""
    if len(vocab) != spec.vocab_size:
        raise ValueError(
            f"the vocabulary has {len(vocab)} tokens but the model's vocab_size is "
            f"{spec.vocab_size}; use the vocabulary the model was built with "
            f"(ModelSpec(..., vocab_size=len(vocab)))"
        )
