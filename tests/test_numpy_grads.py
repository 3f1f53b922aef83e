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
    analytic_gradients,
    check_model,
    compare,
    loss_of,
    numerical_gradient,
    problem,
    state_names,
)
from numpy_ref.models import backward, forward_with_cache, loss_and_grads
from numpy_ref.spec import flatten_params


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
def test_loss_and_grads_returns_the_checked_gradients(kind, reset, layers) -> None:
    spec, params, X, Y, state = problem(kind, layers, reset)
    _, grads, _ = loss_and_grads(spec, params, X, Y, state)
    checked = analytic_gradients(spec, params, X, Y, state)
    flat_grads = flatten_params(grads)
    assert list(flat_grads) == list(flatten_params(params))
    for key, grad in flat_grads.items():
        assert grad.dtype == np.float64
        np.testing.assert_array_equal(grad, checked[key])


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

    def no_recurrent_share(W_h, dstate_next, cache):
        da_x, dstate_prev, dW_h = spec.cell.step_backward(W_h, dstate_next, cache)
        return da_x, dstate_prev, 0.0 * dW_h

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
