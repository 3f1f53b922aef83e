"""Hand-written BPTT against centred finite differences, in float64, for every parameter.

How close is close enough. With ``eps = 1e-5`` a centred difference ``(f(x+eps) - f(x-eps))/2eps``
has truncation error ``eps^2 |f'''| / 6 ~ 1e-11`` and rounding error ``~ u |f| / eps`` with
``u = 2.2e-16`` and a loss ``f ~ 1.6``: ``~ 4e-11``. We measured at most 7e-11 absolute over every
model here. We compare with the relative error ``|num - ana| / max(|num|, |ana|, 1e-3)``: for a
gradient element of size >= 1e-3 that is <= 1e-7, so the bound 1e-6 leaves a factor 10 of margin,
while a wrong or missing term in the backward gives an O(1) relative error on the elements it
touches. Elements below 1e-3 are held to an absolute 1e-9, still 10x the noise of the difference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref.cells import CELLS
from numpy_ref.models import (
    backward,
    forward_loss,
    forward_with_cache,
    loss_and_grads,
    softmax_cross_entropy,
)
from numpy_ref.spec import ModelSpec, flatten_params, init_params, unflatten_params

EPS = 1e-5
REL_TOL = 1e-6
FLOOR = 1e-3


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, indices=None) -> np.ndarray:
    """Centred differences of the scalar ``f`` at ``x``, element by element (NaN where skipped)."""
    grad = np.full(x.shape, np.nan)
    for index in indices if indices is not None else np.ndindex(x.shape):
        bumped = x.copy()
        bumped[index] = x[index] + EPS
        f_plus = f(bumped)
        bumped[index] = x[index] - EPS
        f_minus = f(bumped)
        grad[index] = (f_plus - f_minus) / (2 * EPS)
    return grad


def relative_error(numeric: np.ndarray, analytic: np.ndarray) -> np.ndarray:
    """``|num - ana| / max(|num|, |ana|, FLOOR)`` element by element (module docstring)."""
    scale = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), FLOOR)
    return np.abs(numeric - analytic) / scale


def assert_gradient_matches(numeric: np.ndarray, analytic: np.ndarray, name: str) -> None:
    checked = ~np.isnan(numeric)
    assert analytic.shape == numeric.shape, name
    errors = relative_error(numeric[checked], analytic[checked])
    worst = int(np.argmax(errors))
    assert errors[worst] < REL_TOL, (
        f"{name}: relative error {errors[worst]:.2e} at checked element {worst}: "
        f"numeric {numeric[checked][worst]!r}, analytic {analytic[checked][worst]!r}"
    )


def make_problem(kind: str, reset: str, layers: int, V=5, H=3, B=2, T=4, seed=0):
    """Weights N(0, 0.5^2), biases and initial state random: no gate saturated, none linear."""
    spec = ModelSpec(kind, V, H, layers, reset)
    rng = np.random.default_rng(seed)
    params = init_params(spec, seed=seed, dtype=np.float64, sigma=0.5)
    params = unflatten_params(
        {k: v + 0.5 * rng.standard_normal(v.shape) if k.split(".")[-1].startswith("b_") else v
         for k, v in flatten_params(params).items()}
    )  # fmt: skip
    X = rng.integers(0, V, size=(B, T))
    Y = rng.integers(0, V, size=(B, T))
    state = tuple(rng.normal(0.0, 0.5, size=(layers, B, H)) for _ in range(spec.num_states))
    return spec, params, X, Y, state


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_parameter_gradient_matches_finite_differences(case) -> None:
    spec, params, X, Y, state = make_problem(*case)
    _, grads, _ = loss_and_grads(spec, params, X, Y, state)
    flat, flat_grads = flatten_params(params), flatten_params(grads)
    assert list(flat_grads) == list(flat)
    for key, value in flat.items():

        def loss_at(w: np.ndarray, key: str = key) -> float:
            return forward_loss(spec, unflatten_params({**flat, key: w}), X, Y, state)[0]

        assert flat_grads[key].dtype == np.float64
        assert_gradient_matches(numerical_gradient(loss_at, value), flat_grads[key], key)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_initial_state_gradient_matches_finite_differences(case) -> None:
    """The gradient that truncated BPTT drops between minibatches, checked all the same."""
    spec, params, X, Y, state = make_problem(*case)
    logits, _, cache = forward_with_cache(spec, params, X, state)
    T, B, V = logits.shape
    _, dlogits = softmax_cross_entropy(logits.reshape(T * B, V), Y.T.reshape(-1))
    _, dstate = backward(spec, params, cache, dlogits.reshape(T, B, V))
    assert len(dstate) == spec.num_states
    for i, s in enumerate(state):

        def loss_at(s_new: np.ndarray, i: int = i) -> float:
            new_state = state[:i] + (s_new,) + state[i + 1 :]
            return forward_loss(spec, params, X, Y, new_state)[0]

        assert_gradient_matches(numerical_gradient(loss_at, s), dstate[i], f"dstate0[{i}]")


def test_gradient_check_catches_a_small_error() -> None:
    """The check has teeth: one element of dW_hh off by 1e-4 of its size is caught."""
    spec, params, X, Y, state = make_problem("rnn", "before", 1)
    _, grads, _ = loss_and_grads(spec, params, X, Y, state)
    W_hh = params["layers"][0]["W_hh"]

    def loss_at(w: np.ndarray) -> float:
        layer = {**params["layers"][0], "W_hh": w}
        return forward_loss(spec, {**params, "layers": [layer]}, X, Y, state)[0]

    numeric = numerical_gradient(loss_at, W_hh)
    wrong = grads["layers"][0]["W_hh"].copy()
    index = np.unravel_index(np.argmax(np.abs(wrong)), wrong.shape)
    wrong[index] *= 1 + 1e-4
    assert_gradient_matches(numeric, grads["layers"][0]["W_hh"], "W_hh")
    with pytest.raises(AssertionError, match="W_hh: relative error"):
        assert_gradient_matches(numeric, wrong, "W_hh")


# --- each cell on its own: every output of the step backward ---------------------------------


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_step_backward_matches_finite_differences(name: str) -> None:
    """Every output of one cell's step backward, against the step forward alone: the loss is
    ``sum(G_k * state_next[k])`` with random weights ``G``, so ``dstate_next = G``."""
    cell = CELLS[name]
    B, H, G = 3, 4, len(cell.gates)
    rng = np.random.default_rng(1)
    a_x = rng.normal(0, 1.0, (B, G * H))
    W_h = rng.normal(0, 0.5, (H, G * H))
    state_prev = tuple(rng.normal(0, 0.5, (B, H)) for _ in cell.states)
    weights = tuple(rng.normal(0, 1, (B, H)) for _ in cell.states)

    def loss(W_h, state_prev, a_x) -> float:
        state_next, _ = cell.step_forward(W_h, state_prev, a_x)
        return float(sum(np.sum(g * s) for g, s in zip(weights, state_next, strict=True)))

    _, cache = cell.step_forward(W_h, state_prev, a_x)
    da_x, dstate_prev, dW_h = cell.step_backward(W_h, weights, cache)
    assert_gradient_matches(
        numerical_gradient(lambda a: loss(W_h, state_prev, a), a_x), da_x, "da_x"
    )
    assert_gradient_matches(
        numerical_gradient(lambda w: loss(w, state_prev, a_x), W_h), dW_h, "dW_h"
    )
    for k, name_k in enumerate(cell.states):

        def loss_k(s: np.ndarray, k: int = k) -> float:
            return loss(W_h, (*state_prev[:k], s, *state_prev[k + 1 :]), a_x)

        numeric = numerical_gradient(loss_k, state_prev[k])
        assert_gradient_matches(numeric, dstate_prev[k], f"d{name_k}_prev")


# --- random shapes, a random subset of elements ----------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    variant=st.sampled_from(VARIANTS),
    layers=st.integers(1, 3),
    V=st.integers(2, 5),
    H=st.integers(1, 4),
    B=st.integers(1, 3),
    T=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_gradients_match_for_random_shapes(variant, layers, V, H, B, T, seed) -> None:
    spec, params, X, Y, state = make_problem(*variant, layers, V=V, H=H, B=B, T=T, seed=seed)
    _, grads, _ = loss_and_grads(spec, params, X, Y, state)
    flat, flat_grads = flatten_params(params), flatten_params(grads)
    rng = np.random.default_rng(seed)
    for key, value in flat.items():
        picks = rng.choice(value.size, size=min(3, value.size), replace=False)
        indices = [np.unravel_index(i, value.shape) for i in picks]

        def loss_at(w: np.ndarray, key: str = key) -> float:
            return forward_loss(spec, unflatten_params({**flat, key: w}), X, Y, state)[0]

        assert_gradient_matches(numerical_gradient(loss_at, value, indices), flat_grads[key], key)
