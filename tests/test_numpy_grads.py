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
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref.models import (
    backward,
    forward_loss,
    forward_with_cache,
    gru_step_backward,
    gru_step_forward,
    loss_and_grads,
    lstm_step_backward,
    lstm_step_forward,
    rnn_step_backward,
    rnn_step_forward,
    softmax_cross_entropy,
)
from numpy_ref.spec import ModelSpec, flatten_params, init_params, unflatten_params

EPS = 1e-5
REL_TOL = 1e-6
FLOOR = 1e-3
VARIANTS = [("rnn", "before"), ("gru", "before"), ("gru", "after"), ("lstm", "before")]
CASES = [(kind, reset, layers) for kind, reset in VARIANTS for layers in (1, 2)]


def case_id(case: tuple[str, str, int]) -> str:
    kind, reset, layers = case
    return f"{kind}{'-' + reset if kind == 'gru' else ''}-L{layers}"


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


@pytest.mark.parametrize("case", CASES, ids=case_id)
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


@pytest.mark.parametrize("case", CASES, ids=case_id)
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


def _step_case(kind: str, reset: str, B=3, H=4, seed=1):
    rng = np.random.default_rng(seed)
    gates = {"rnn": "h", "gru": "zrh", "lstm": "ifoc"}[kind]
    x_proj = {g: rng.normal(0, 1.0, (B, H)) for g in gates}
    layer = {f"W_h{g}": rng.normal(0, 0.5, (H, H)) for g in gates}
    h_prev, c_prev = rng.normal(0, 0.5, (B, H)), rng.normal(0, 0.5, (B, H))
    G_h, G_c = rng.normal(0, 1, (B, H)), rng.normal(0, 1, (B, H))  # loss = sum(G_h*h + G_c*c)

    def loss(x_proj, h_prev, c_prev, layer) -> float:
        if kind == "rnn":
            h, _ = rnn_step_forward(x_proj, h_prev, layer)
            return float(np.sum(G_h * h))
        if kind == "gru":
            h, _ = gru_step_forward(x_proj, h_prev, layer, reset)
            return float(np.sum(G_h * h))
        h, c, _ = lstm_step_forward(x_proj, h_prev, c_prev, layer)
        return float(np.sum(G_h * h) + np.sum(G_c * c))

    if kind == "rnn":
        _, cache = rnn_step_forward(x_proj, h_prev, layer)
        dx, dh_prev, dW = rnn_step_backward(G_h, cache)
        dc_prev = None
    elif kind == "gru":
        _, cache = gru_step_forward(x_proj, h_prev, layer, reset)
        dx, dh_prev, dW = gru_step_backward(G_h, cache)
        dc_prev = None
    else:
        _, _, cache = lstm_step_forward(x_proj, h_prev, c_prev, layer)
        dx, dh_prev, dc_prev, dW = lstm_step_backward(G_h, G_c, cache)
    return x_proj, h_prev, c_prev, layer, loss, dx, dh_prev, dc_prev, dW


@pytest.mark.parametrize("kind, reset", VARIANTS)
def test_step_backward_matches_finite_differences(kind: str, reset: str) -> None:
    x_proj, h_prev, c_prev, layer, loss, dx, dh_prev, dc_prev, dW = _step_case(kind, reset)
    assert set(dx) == set(x_proj) and set(dW) == set(layer)
    for g in x_proj:
        numeric = numerical_gradient(
            lambda a, g=g: loss({**x_proj, g: a}, h_prev, c_prev, layer), x_proj[g]
        )
        assert_gradient_matches(numeric, dx[g], f"dx_proj[{g!r}]")
    for key in layer:
        numeric = numerical_gradient(
            lambda w, key=key: loss(x_proj, h_prev, c_prev, {**layer, key: w}), layer[key]
        )
        assert_gradient_matches(numeric, dW[key], key)
    numeric = numerical_gradient(lambda h: loss(x_proj, h, c_prev, layer), h_prev)
    assert_gradient_matches(numeric, dh_prev, "dh_prev")
    if kind == "lstm":
        numeric = numerical_gradient(lambda c: loss(x_proj, h_prev, c, layer), c_prev)
        assert_gradient_matches(numeric, dc_prev, "dc_prev")


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
