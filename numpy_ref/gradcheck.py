"""Gradient checks: the hand-written BPTT against centred finite differences, in float64.

Letters: B batch, T steps, V vocabulary, H hidden, L layers.

For a scalar loss ``f`` and one array ``x`` of its inputs, the numerical gradient of element k is
the centred difference::

    num_k = (f(x + eps e_k) - f(x - eps e_k)) / (2 eps)                    eps = 1e-5

and an analytic gradient ``ana`` passes when every element's relative error is below 1e-6::

    err_k = |num_k - ana_k| / max(|num_k|, |ana_k|, 1e-3)

How close is close enough. A centred difference has truncation error ``eps^2 |f'''| / 6 ~ 1e-11``
and rounding error ``~ u |f| / eps`` with ``u = 2.2e-16`` and a loss ``f ~ 1.6``: ``~ 4e-11``.
We measured at most 7e-11 absolute on the models of :func:`problem`. For a gradient element of
size >= 1e-3 the relative error is then <= 1e-7, so the bound 1e-6 leaves a factor 10 of margin,
while a wrong or missing term in the backward gives an O(1) relative error on the elements it
touches. Elements below the floor 1e-3 are held to an absolute 1e-9, still 10x the noise of the
difference. Only float64 has the digits for this: in float32 the rounding error alone is ~1e-2.

``tests/test_numpy_grads.py`` and ``python -m experiments.gradcheck`` both use this module. Its
*plants* (:func:`plants`) are wrong derivations on purpose: a cell's step backward with one term
left out, to see which rows of the check fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from numpy_ref.cells import Cell, Layer
from numpy_ref.models import (
    backward,
    flat_targets,
    forward_loss,
    forward_with_cache,
    softmax_cross_entropy,
)
from numpy_ref.spec import ModelSpec, Params, State, flatten_params, init_params, unflatten_params

EPS = 1e-5  # the step of the centred difference
REL_TOL = 1e-6  # the largest relative error that passes
FLOOR = 1e-3  # below this size an element is compared in absolute terms (module docstring)


def numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, indices=None, eps: float = EPS
) -> np.ndarray:
    """Centred differences of the scalar ``f`` at ``x``, element by element.

    Args:
        f: the loss as a function of an array shaped like ``x``.
        x: the point, float64.
        indices: the elements to probe (index tuples); None probes every element.
        eps: the step.

    Returns:
        An array shaped like ``x``: the numerical gradient, NaN at the elements not probed.
    """
    grad = np.full(x.shape, np.nan)
    for index in indices if indices is not None else np.ndindex(x.shape):
        bumped = x.copy()
        bumped[index] = x[index] + eps
        f_plus = f(bumped)
        bumped[index] = x[index] - eps
        f_minus = f(bumped)
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(numeric: np.ndarray, analytic: np.ndarray) -> np.ndarray:
    """``|num - ana| / max(|num|, |ana|, FLOOR)`` element by element (module docstring)."""
    scale = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), FLOOR)
    return np.abs(numeric - analytic) / scale


@dataclass(frozen=True)
class GradCheck:
    """One array's check: a row of the table of ``python -m experiments.gradcheck``.

    Attributes:
        name: the parameter's key (``layers.0.W_hf``, ``W_hq``) or ``H_0``, ``C_0`` for the
            initial state.
        shape: the array's shape.
        max_abs: the largest ``|analytic|`` element (how large the gradient is).
        max_error: the largest relative error over the probed elements.
        worst: the index of that element; ``numeric`` and ``analytic`` its two values.
    """

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_error: float
    worst: tuple[int, ...]
    numeric: float
    analytic: float

    @property
    def passed(self) -> bool:
        return self.max_error < REL_TOL

    def describe(self) -> str:
        """One line: the worst element and its two values."""
        return (
            f"{self.name}: relative error {self.max_error:.2e} at {self.worst}: "
            f"numeric {self.numeric!r}, analytic {self.analytic!r}"
        )


def compare(name: str, numeric: np.ndarray, analytic: np.ndarray) -> GradCheck:
    """Check ``analytic`` against ``numeric`` at the elements ``numeric`` probed (not NaN)."""
    analytic = np.asarray(analytic)
    if analytic.shape != numeric.shape:
        raise ValueError(f"{name}: analytic shape {analytic.shape} != numeric {numeric.shape}")
    errors = np.where(np.isnan(numeric), -1.0, relative_error(numeric, analytic))
    worst = np.unravel_index(int(np.argmax(errors)), errors.shape)
    return GradCheck(
        name=name,
        shape=tuple(analytic.shape),
        max_abs=float(np.max(np.abs(analytic), initial=0.0)),
        max_error=float(max(errors[worst], 0.0)),
        worst=tuple(int(i) for i in worst),
        numeric=float(numeric[worst]),
        analytic=float(analytic[worst]),
    )


# --- the whole model ---------------------------------------------------------------------------


def state_names(spec: ModelSpec) -> list[str]:
    """The names of the initial state's arrays in a check: ``H_0`` and, for lstm, ``C_0``."""
    return [f"{s.upper()}_0" for s in spec.cell.states]


def problem(
    kind: str,
    layers: int = 1,
    gru_reset: str = "before",
    V: int = 5,
    H: int = 3,
    B: int = 2,
    T: int = 4,
    seed: int = 0,
) -> tuple[ModelSpec, Params, np.ndarray, np.ndarray, State]:
    """A small float64 model to check, and a minibatch.

    Weights N(0, 0.5^2), biases N(0, 0.5^2) and a random initial state: large enough that no
    gate sits on the linear part of its sigmoid or tanh, small enough that none is saturated,
    so that every term of the backward matters. (The book's init, weights 0.01 and biases 0,
    would leave every gate at sigmoid(0) and hide a wrong term under tiny numbers.)

    Returns:
        ``spec``, ``params``, ``X`` and ``Y`` (int (B, T)), ``state`` (tuple of (L, B, H)).
    """
    spec = ModelSpec(kind, V, H, layers, gru_reset)
    rng = np.random.default_rng(seed)
    params = init_params(spec, seed=seed, dtype=np.float64, sigma=0.5)
    params = unflatten_params(
        {
            k: v + 0.5 * rng.standard_normal(v.shape) if k.split(".")[-1].startswith("b_") else v
            for k, v in flatten_params(params).items()
        }
    )
    X = rng.integers(0, V, size=(B, T))
    Y = rng.integers(0, V, size=(B, T))
    state = tuple(rng.normal(0.0, 0.5, size=(layers, B, H)) for _ in range(spec.num_states))
    return spec, params, X, Y, state


def loss_of(
    spec: ModelSpec, params: Params, X: np.ndarray, Y: np.ndarray, state: State, name: str
) -> Callable[[np.ndarray], float]:
    """The loss as a function of one array: a parameter (by its flat key) or ``H_0``/``C_0``."""
    flat = flatten_params(params)
    names = state_names(spec)
    if name in names:
        k = names.index(name)
        return lambda s: forward_loss(spec, params, X, Y, (*state[:k], s, *state[k + 1 :]))[0]
    if name not in flat:
        raise KeyError(f"{name!r} is neither a parameter ({', '.join(flat)}) nor in {names}")
    return lambda w: forward_loss(spec, unflatten_params({**flat, name: w}), X, Y, state)[0]


def analytic_gradients(
    spec: ModelSpec,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    state: State,
    cell: Cell | None = None,
) -> dict[str, np.ndarray]:
    """The hand-written gradient of the mean loss: every parameter (flat keys), then the initial
    state (``H_0``, ``C_0``, each (L, B, H)).

    ``cell`` is passed to :func:`numpy_ref.models.backward` (a variant of the spec's cell whose
    step backward runs instead of its own); None runs the spec's cell.
    """
    logits, _, cache = forward_with_cache(spec, params, X, state)
    T, B, V = logits.shape
    targets = flat_targets(Y, X, spec.vocab_size)
    _, dlogits = softmax_cross_entropy(logits.reshape(T * B, V), targets)  # (S1')
    grads, dstate = backward(spec, params, cache, dlogits.reshape(T, B, V), cell=cell)
    return {**flatten_params(grads), **dict(zip(state_names(spec), dstate, strict=True))}


def check_model(
    spec: ModelSpec,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    state: State,
    cell: Cell | None = None,
) -> list[GradCheck]:
    """Every element of every parameter's gradient and of the initial state's, against centred
    differences of :func:`numpy_ref.models.forward_loss`: one :class:`GradCheck` per array, in
    the order of :func:`analytic_gradients`. Costs two forward passes per element.

    Args:
        spec, params, X, Y, state: the model and the minibatch, float64 (e.g. :func:`problem`).
        cell: a variant of the spec's cell for the backward (see :func:`analytic_gradients`).
    """
    analytic = analytic_gradients(spec, params, X, Y, state, cell)
    points = {**flatten_params(params), **dict(zip(state_names(spec), state, strict=True))}
    rows = []
    for name, grad in analytic.items():
        numeric = numerical_gradient(loss_of(spec, params, X, Y, state, name), points[name])
        rows.append(compare(name, numeric, grad))
    return rows


# --- plants: one backward term left out on purpose ---------------------------------------------

StepOutput = tuple[np.ndarray, State, Layer]  # dx, dstate_prev, dlayer
StepBackward = Callable[[State, tuple, Layer], StepOutput]


@dataclass(frozen=True)
class Plant:
    """A wrong derivation: ``step_backward`` runs the correct step backward (its first argument)
    in a way that leaves one term out.

    Attributes:
        name: the ``--plant`` value of ``python -m experiments.gradcheck``.
        what: which term is missing, in docs/bptt.md's equations.
        step_backward: ``(correct, dstate_next, cache, layer) -> (dx, dstate_prev, dlayer)``.
    """

    name: str
    what: str
    step_backward: Callable[[StepBackward, State, tuple, Layer], StepOutput]


def _without_recurrent_weight(key: str) -> Callable:
    """The step backward run as if ``W_hg`` were zero: in the backward, a recurrent weight only
    carries the gradient back to ``h_prev`` (and, in the book's GRU, ``W_hh`` to R as well)."""

    def step_backward(correct, dstate_next, cache, layer):
        return correct(dstate_next, cache, {**layer, key: np.zeros_like(layer[key])})

    return step_backward


def _without_share(key: str) -> Callable:
    """The step's share of ``dW_hg`` dropped: the (B2) sum never receives it."""

    def step_backward(correct, dstate_next, cache, layer):
        dx, dstate_prev, dlayer = correct(dstate_next, cache, layer)
        return dx, dstate_prev, {**dlayer, key: np.zeros_like(dlayer[key])}

    return step_backward


def _without_memory_path(correct, dstate_next, cache, layer):
    """LSTM: dc_prev = 0, the path C_t -> C_{t-1} through the forget gate cut."""
    dx, (dh_prev, dc_prev), dlayer = correct(dstate_next, cache, layer)
    return dx, (dh_prev, np.zeros_like(dc_prev)), dlayer


def _without_direct_path(correct, dstate_next, cache, layer):
    """GRU: dh_prev without ``dH_t * Z_t``, the direct path of (G4'); Z is the caches' third."""
    dx, (dh_prev,), dlayer = correct(dstate_next, cache, layer)
    return dx, (dh_prev - dstate_next[0] * cache[2],), dlayer


# the equation of docs/bptt.md whose backward holds gate g's recurrent term, by cell
_RECURRENT_TERM = {
    "rnn": {"h": "R1'"},
    "gru_before": {"z": "G1'", "r": "G2'", "h": "G3b'"},
    "gru_after": {"z": "G1'", "r": "G2'", "h": "G3a'"},
    "lstm": dict.fromkeys("ifoc", "L1'-L4'"),
}


def plants(cell: Cell) -> dict[str, Plant]:
    """The plants offered for ``cell``, by name."""
    found = []
    for g in cell.gates:
        what = f"dh_prev misses dA_{g} W_h{g}^T, the path back through W_h{g}"
        if cell.name == "gru_before" and g == "h":
            what = "dR and dh_prev miss the candidate's path back through W_hh"
        elif cell.kind == "gru" and g == "h":
            what = "dh_prev misses the candidate's path back through W_hh"
        what += f" ({_RECURRENT_TERM[cell.name][g]}; the backward runs with W_h{g} = 0)"
        found.append(Plant(f"W_h{g}", what, _without_recurrent_weight(f"W_h{g}")))
    if cell.kind == "lstm":
        what = "dc_prev dropped: the memory path C_t -> C_(t-1) is cut (L5')"
        found.append(Plant("c", what, _without_memory_path))
    if cell.kind == "gru":
        what = "dh_prev misses the direct path dH_t * Z_t (G4')"
        found.append(Plant("direct", what, _without_direct_path))
    for g in cell.gates:
        what = f"dW_h{g} misses every step's share H_(t-1)^T dA_{g} (B2)"
        found.append(Plant(f"dW_h{g}", what, _without_share(f"W_h{g}")))
    return {plant.name: plant for plant in found}


def planted_cell(cell: Cell, plant: Plant) -> Cell:
    """``cell`` whose step backward is ``plant``'s: the correct one with a term left out."""

    def step_backward(dstate_next: State, cache: tuple, layer: Layer) -> StepOutput:
        return plant.step_backward(cell.step_backward, dstate_next, cache, layer)

    return dataclasses.replace(cell, step_backward=step_backward)
