"""Hand-written BPTT against centred finite differences, in float64, for every parameter.

The numerical gradient, the relative error with its floor and the tolerance (1e-6) are those of
:mod:`numpy_ref.gradcheck`, whose docstring explains how close is close enough; so is the small
model of every check (:func:`numpy_ref.gradcheck.problem`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref.cells import CELLS
from numpy_ref.gradcheck import (
    EPS,
    analytic_gradients,
    check_model,
    compare,
    loss_of,
    numerical_gradient,
    problem,
    state_names,
)
from numpy_ref.models import backward, forward_loss, forward_with_cache, loss_and_grads
from numpy_ref.spec import flatten_params, unflatten_params


def assert_gradient_matches(numeric: np.ndarray, analytic: np.ndarray, name: str) -> None:
    row = compare(name, numeric, analytic)
    assert row.passed, row.describe()


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_every_gradient_matches_finite_differences(kind, reset, layers) -> None:
    """Every element of every parameter's gradient, and of the initial state's (the gradient
    that truncated BPTT drops between minibatches, checked all the same)."""
    spec, params, X, Y, state = problem(kind, layers, reset)
    rows = check_model(spec, params, X, Y, state)
    assert [row.name for row in rows] == [*flatten_params(params), *state_names(spec)]
    for row in rows:
        assert row.passed, row.describe()


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_loss_and_grads_gives_the_derivative_of_forward_loss_in_any_direction(
    kind, reset, layers
) -> None:
    """``loss_and_grads``' own gradient (not the check's copy of its steps) against one centred
    difference of ``forward_loss`` along a random direction U through every parameter at once:
    ``(L(p + eps U) - L(p - eps U)) / (2 eps) = <grads, U>`` up to ~1e-10 (numpy_ref.gradcheck's
    error budget), far below the O(1) change a wrong or missing term makes."""
    spec, params, X, Y, state = problem(kind, layers, reset)
    loss, grads, _ = loss_and_grads(spec, params, X, Y, state)
    assert loss == forward_loss(spec, params, X, Y, state)[0]
    rng = np.random.default_rng(7)
    flat = flatten_params(params)
    U = {key: rng.standard_normal(value.shape) for key, value in flat.items()}

    def loss_at(step: float) -> float:
        moved = unflatten_params({key: flat[key] + step * U[key] for key in flat})
        return forward_loss(spec, moved, X, Y, state)[0]

    numeric = (loss_at(EPS) - loss_at(-EPS)) / (2 * EPS)
    analytic = sum(float(np.sum(g * U[key])) for key, g in flatten_params(grads).items())
    assert [g.dtype for g in flatten_params(grads).values()] == [np.float64] * len(flat)
    assert abs(numeric - analytic) < 1e-7 * max(1.0, abs(analytic)), (numeric, analytic)


def test_gradient_check_catches_a_small_error() -> None:
    """The check has teeth: one element of dW_hh off by 1e-4 of its size is caught."""
    spec, params, X, Y, state = problem("rnn")
    grad = analytic_gradients(spec, params, X, Y, state)["layers.0.W_hh"]
    loss_at = loss_of(spec, params, X, Y, state, "layers.0.W_hh")
    numeric = numerical_gradient(loss_at, params["layers"][0]["W_hh"])
    wrong = grad.copy()
    index = np.unravel_index(np.argmax(np.abs(wrong)), wrong.shape)
    wrong[index] *= 1 + 1e-4
    assert_gradient_matches(numeric, grad, "W_hh")
    with pytest.raises(AssertionError, match="W_hh: relative error"):
        assert_gradient_matches(numeric, wrong, "W_hh")


def test_backward_runs_the_step_backward_of_the_cell_it_is_given() -> None:
    spec, params, X, Y, state = problem("lstm")
    reference = analytic_gradients(spec, params, X, Y, state)
    same = analytic_gradients(spec, params, X, Y, state, dataclasses.replace(spec.cell))
    for key, grad in reference.items():
        np.testing.assert_array_equal(same[key], grad)

    def no_recurrent_share(dstate_next, cache, layer):
        dx, dstate_prev, dlayer = spec.cell.step_backward(dstate_next, cache, layer)
        return (
            dx,
            dstate_prev,
            {k: 0.0 * v if k.startswith("W_h") else v for k, v in dlayer.items()},
        )

    cell = dataclasses.replace(spec.cell, step_backward=no_recurrent_share)
    changed = analytic_gradients(spec, params, X, Y, state, cell)
    for key, grad in reference.items():
        if key.startswith("layers.0.W_h"):
            assert np.all(changed[key] == 0.0) and np.any(grad != 0.0), key
        else:
            np.testing.assert_array_equal(changed[key], grad)
    logits, _, cache = forward_with_cache(spec, params, X, state)
    with pytest.raises(ValueError, match="cell 'rnn' does not fit a model of cell 'lstm'"):
        backward(spec, params, cache, np.zeros_like(logits), cell=CELLS["rnn"])


# --- each cell on its own: every output of the step backward ---------------------------------


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_step_backward_matches_finite_differences(name: str) -> None:
    """Every output of one cell's step backward, against the step forward alone: the loss is
    ``sum(G_k * state_next[k])`` with random weights ``G``, so ``dstate_next = G``."""
    cell = CELLS[name]
    B, D, H = 3, 5, 4  # batch, input, hidden
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1.0, (B, D))
    layer = {}
    for g in cell.gates:
        layer |= {
            f"W_x{g}": rng.normal(0, 0.5, (D, H)),
            f"W_h{g}": rng.normal(0, 0.5, (H, H)),
            f"b_{g}": rng.normal(0, 0.5, H),
        }
    state_prev = tuple(rng.normal(0, 0.5, (B, H)) for _ in cell.states)
    weights = tuple(rng.normal(0, 1, (B, H)) for _ in cell.states)

    def loss(x, state_prev, layer) -> float:
        state_next, _ = cell.step_forward(x, state_prev, layer)
        return float(sum(np.sum(g * s) for g, s in zip(weights, state_next, strict=True)))

    _, cache = cell.step_forward(x, state_prev, layer)
    dx, dstate_prev, dlayer = cell.step_backward(weights, cache, layer)
    assert list(dlayer) == list(layer)
    assert_gradient_matches(numerical_gradient(lambda a: loss(a, state_prev, layer), x), dx, "dx")
    for key, value in layer.items():
        numeric = numerical_gradient(
            lambda w, key=key: loss(x, state_prev, {**layer, key: w}), value
        )
        assert_gradient_matches(numeric, dlayer[key], f"d{key}")
    for k, name_k in enumerate(cell.states):

        def loss_k(s: np.ndarray, k: int = k) -> float:
            return loss(x, (*state_prev[:k], s, *state_prev[k + 1 :]), layer)

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
    kind, reset = variant
    spec, params, X, Y, state = problem(kind, layers, reset, V=V, H=H, B=B, T=T, seed=seed)
    grads = analytic_gradients(spec, params, X, Y, state)
    points = {**flatten_params(params), **dict(zip(state_names(spec), state, strict=True))}
    rng = np.random.default_rng(seed)
    for key, value in points.items():
        picks = rng.choice(value.size, size=min(3, value.size), replace=False)
        indices = [np.unravel_index(i, value.shape) for i in picks]
        loss_at = loss_of(spec, params, X, Y, state, key)
        assert_gradient_matches(numerical_gradient(loss_at, value, indices), grads[key], key)
