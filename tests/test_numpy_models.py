"""The NumPy models: the forward pass against the book's step-by-step model, a tiny model by hand,
shapes, dtypes, the state.

Tolerances: float64 results computed two ways that differ only in the order of the sums (layer by
layer against all layers per step, an output product over all steps against one per step) agree
to a few units of roundoff, ``~ K * 2.2e-16`` for sums of ``K <= 10`` terms of size ~1: we use
``rtol=1e-13``. Float32 against float64 from the same seed: weights differ by rounding
(``6e-8`` relative) and a few dozen float32 operations follow, so ``rtol=1e-5``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import VARIANT_IDS, VARIANTS
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref.models import (
    forward,
    forward_loss,
    loss_and_grads,
    softmax_cross_entropy,
)
from numpy_ref.optim import sgd
from numpy_ref.spec import ModelSpec, begin_state, flatten_params, init_params

ROUNDOFF = 1e-13


def random_case(kind, reset="before", layers=2, V=6, H=4, B=3, T=5, seed=0, dtype=np.float64):
    spec = ModelSpec(kind, V, H, layers, reset)
    params = init_params(spec, seed=seed, dtype=dtype, sigma=0.5)
    rng = np.random.default_rng(seed + 1)
    X = rng.integers(0, V, size=(B, T))
    Y = rng.integers(0, V, size=(B, T))
    state = tuple(rng.normal(0, 0.5, (layers, B, H)).astype(dtype) for _ in range(spec.num_states))
    return spec, params, X, Y, state


def one_hot(tokens: np.ndarray, V: int) -> np.ndarray:
    return np.eye(V)[tokens]


def naive_forward(spec, params, X, state):
    """The book's way: one-hot inputs, one step and one output product at a time, all layers per
    step. Built from the table's step functions; shares nothing else with ``models.forward``."""
    B, T = X.shape
    cell = spec.cell
    state = [list(s) for s in state]  # state[i][l]: (B, H)
    outputs = []
    for t in range(T):
        x = one_hot(X[:, t], spec.vocab_size)  # (B, V)
        for index, layer in enumerate(params["layers"]):
            new, _ = cell.step_forward(x, tuple(s[index] for s in state), layer)
            for i, s in enumerate(new):
                state[i][index] = s
            x = new[0]
        outputs.append(x @ params["W_hq"] + params["b_q"])
    return np.stack(outputs), tuple(np.stack(s) for s in state)


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_forward_equals_the_books_one_hot_step_by_step_model(kind, reset, layers) -> None:
    spec, params, X, _, state = random_case(kind, reset, layers)
    logits, new_state = forward(spec, params, X, state)
    expected_logits, expected_state = naive_forward(spec, params, X, state)
    assert logits.shape == (X.shape[1], X.shape[0], spec.vocab_size)
    np.testing.assert_allclose(logits, expected_logits, rtol=ROUNDOFF, atol=ROUNDOFF)
    for s, e in zip(new_state, expected_state, strict=True):
        np.testing.assert_allclose(s, e, rtol=ROUNDOFF, atol=ROUNDOFF)


def test_a_two_step_rnn_with_one_hidden_unit_by_hand() -> None:
    """The loss, the final state and the gradients of W_hh, W_xh and b_h of a model small enough
    to write out with Python floats: V = 2, H = 1, one example, two steps, the chain rule by hand
    (docs/bptt.md (R1), (O1), (S1) and their backward; both tokens used once, so row v of dW_xh
    is the da of the step that read token v)."""
    spec = ModelSpec("rnn", vocab_size=2, num_hiddens=1)
    w_x, w_hh, b_h, w_q, b_q, h0 = (0.5, -0.25), 2.0, 0.1, (1.0, -1.0), (0.0, 0.2), 0.3
    params = {
        "layers": [
            {
                "W_xh": np.array([[w_x[0]], [w_x[1]]]),
                "W_hh": np.array([[w_hh]]),
                "b_h": np.array([b_h]),
            }
        ],
        "W_hq": np.array([w_q]),
        "b_q": np.array(b_q),
    }
    X, Y = np.array([[0, 1]]), np.array([[1, 0]])  # (B, T) = (1, 2)
    h1 = math.tanh(w_x[0] + w_hh * h0 + b_h)  # (R1), step 1 reads token 0
    h2 = math.tanh(w_x[1] + w_hh * h1 + b_h)  # step 2 reads token 1

    def softmax(h: float) -> tuple[float, float]:  # (O1) logits h W_hq + b_q, then softmax
        o = [h * w_q[v] + b_q[v] for v in (0, 1)]
        z = math.exp(o[0]) + math.exp(o[1])
        return math.exp(o[0]) / z, math.exp(o[1]) / z

    p1, p2 = softmax(h1), softmax(h2)
    loss = -(math.log(p1[1]) + math.log(p2[0])) / 2  # (S1) targets 1, then 0
    # backward: dO_t = (p_t - onehot(y_t)) / 2, dH_t from above = dO_t W_hq^T
    dh2 = ((p2[0] - 1) * w_q[0] + p2[1] * w_q[1]) / 2
    dh1_above = (p1[0] * w_q[0] + (p1[1] - 1) * w_q[1]) / 2
    da2 = dh2 * (1 - h2 * h2)  # (R1') step 2
    dh1 = dh1_above + da2 * w_hh  # (B1) h1 feeds the output and step 2
    da1 = dh1 * (1 - h1 * h1)  # (R1') step 1
    dW_hh = h0 * da1 + h1 * da2  # (B2) the two steps' shares

    state = (np.array([[[h0]]]),)  # (L, B, H)
    assert forward_loss(spec, params, X, Y, state)[0] == pytest.approx(loss, rel=ROUNDOFF)
    got_loss, grads, (h_final,) = loss_and_grads(spec, params, X, Y, state)
    assert got_loss == pytest.approx(loss, rel=ROUNDOFF)
    assert h_final[0, 0, 0] == pytest.approx(h2, rel=ROUNDOFF)
    layer = grads["layers"][0]
    assert layer["W_hh"][0, 0] == pytest.approx(dW_hh, rel=ROUNDOFF)
    np.testing.assert_allclose(layer["W_xh"][:, 0], [da1, da2], rtol=ROUNDOFF)
    assert layer["b_h"][0] == pytest.approx(da1 + da2, rel=ROUNDOFF)


def test_loss_pairs_logit_row_t_b_with_target_y_b_t() -> None:
    spec, params, X, Y, state = random_case("gru", layers=1, B=3, T=4)
    loss, _, _ = loss_and_grads(spec, params, X, Y, state)
    logits, _ = forward(spec, params, X, state)
    terms = [
        -(logits[t, b, Y[b, t]] - np.log(np.exp(logits[t, b]).sum()))
        for b in range(3)
        for t in range(4)
    ]
    assert loss == pytest.approx(np.mean(terms), rel=ROUNDOFF)


def test_softmax_cross_entropy_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [3.0, 3.0, 3.0]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 2]))
    assert loss == pytest.approx((1e4 + math.log(3)) / 2, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-15)


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
def test_carrying_the_state_splits_a_sequence_exactly(kind, reset) -> None:
    spec, params, X, _, state = random_case(kind, reset)
    whole, final = forward(spec, params, X, state)
    first, mid = forward(spec, params, X[:, :2], state)
    second, end = forward(spec, params, X[:, 2:], mid)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=ROUNDOFF)
    for a, b in zip(end, final, strict=True):
        np.testing.assert_allclose(a, b, rtol=ROUNDOFF)


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
def test_inputs_are_never_mutated_and_the_final_state_is_fresh(kind, reset) -> None:
    spec, params, X, Y, state = random_case(kind, reset)
    params_before = {k: v.copy() for k, v in flatten_params(params).items()}
    state_before = tuple(s.copy() for s in state)
    _, grads, new_state = loss_and_grads(spec, params, X, Y, state)
    for key, value in flatten_params(params).items():
        assert np.array_equal(value, params_before[key]), key
    for s, before in zip(state, state_before, strict=True):
        assert np.array_equal(s, before)
    arrays = [*flatten_params(params).values(), *flatten_params(grads).values(), *state]
    for s in new_state:
        assert s.shape == state[0].shape
        assert not any(np.shares_memory(s, a) for a in arrays)


def test_gru_variants_differ_and_the_variant_is_ignored_elsewhere() -> None:
    for kind in ("rnn", "lstm"):
        spec, params, X, _, state = random_case(kind)
        other = ModelSpec(kind, spec.vocab_size, spec.num_hiddens, spec.num_layers, "after")
        assert np.array_equal(
            forward(spec, params, X, state)[0], forward(other, params, X, state)[0]
        )
    spec, params, X, _, state = random_case("gru", "before")
    after = ModelSpec("gru", spec.vocab_size, spec.num_hiddens, spec.num_layers, "after")
    assert not np.allclose(forward(spec, params, X, state)[0], forward(after, params, X, state)[0])


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
def test_float32_follows_the_params_and_agrees_with_float64(kind, reset) -> None:
    spec, params64, X, Y, state64 = random_case(kind, reset)
    params32 = init_params(spec, seed=0, dtype=np.float32, sigma=0.5)
    state32 = tuple(s.astype(np.float32) for s in state64)
    loss32, grads32, new_state32 = loss_and_grads(spec, params32, X, Y, state32)
    loss64, grads64, _ = loss_and_grads(spec, params64, X, Y, state64)
    assert all(g.dtype == np.float32 for g in flatten_params(grads32).values())
    assert all(s.dtype == np.float32 for s in new_state32)
    assert forward(spec, params32, X, state32)[0].dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for key, g in flatten_params(grads64).items():
        np.testing.assert_allclose(flatten_params(grads32)[key], g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_fresh_model_starts_at_log_v_and_a_few_sgd_steps_lower_the_loss(kind, reset, layers):
    """Smoke test with the book's initialisation (weights N(0, 0.01^2), float32)."""
    V = 28
    spec = ModelSpec(kind, V, 32, layers, reset)
    params = init_params(spec, seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, V, (4, 10)), rng.integers(0, V, (4, 10))
    state = begin_state(spec, 4)
    # logits are ~1e-4 at this scale, so the softmax is uniform to ~1e-4: loss = log V +- 1e-3
    first, grads, _ = loss_and_grads(spec, params, X, Y, state)
    assert first == pytest.approx(math.log(V), abs=1e-3)
    for _ in range(5):
        params = sgd(params, grads, 1.0)
        loss, grads, _ = loss_and_grads(spec, params, X, Y, state)
    assert loss < first - 0.01


@settings(max_examples=40, deadline=None)
@given(
    variant=st.sampled_from(VARIANTS),
    layers=st.integers(1, 3),
    V=st.integers(1, 5),
    H=st.integers(1, 5),
    B=st.integers(1, 5),
    T=st.integers(1, 5),
)
def test_any_small_sizes_give_the_books_values(variant, layers, V, H, B, T) -> None:
    """For every size, the values of the step-by-step one-hot model and the mean cross-entropy
    written out term by term; gradients of the right shapes and finite."""
    spec, params, X, Y, state = random_case(*variant, layers, V=V, H=H, B=B, T=T)
    logits, new_state = forward(spec, params, X, state)
    expected_logits, expected_state = naive_forward(spec, params, X, state)
    np.testing.assert_allclose(logits, expected_logits, rtol=ROUNDOFF, atol=ROUNDOFF)
    for s, e in zip(new_state, expected_state, strict=True):
        np.testing.assert_allclose(s, e, rtol=ROUNDOFF, atol=ROUNDOFF)
    loss, grads, _ = loss_and_grads(spec, params, X, Y, state)
    log_z = np.log(np.exp(expected_logits).sum(axis=-1))  # (T, B)
    picked = np.take_along_axis(expected_logits, Y.T[..., None], axis=-1)[..., 0]
    assert loss == pytest.approx(float(np.mean(log_z - picked)), rel=ROUNDOFF)
    for key, value in flatten_params(params).items():
        assert flatten_params(grads)[key].shape == value.shape
        assert np.all(np.isfinite(flatten_params(grads)[key]))


# --- errors ----------------------------------------------------------------------------------


def test_bad_inputs_get_errors_that_name_the_value_and_the_fix() -> None:
    spec, params, X, Y, state = random_case("lstm", V=6)
    with pytest.raises(
        ValueError, match=r"token indices in \[6, 6\], outside \[0, 5\] of a vocabulary of 6"
    ):
        forward(spec, params, np.full_like(X, 6), state)
    with pytest.raises(ValueError, match=r"token indices in \[-1, "):
        forward(spec, params, np.full_like(X, -1), state)
    with pytest.raises(ValueError, match="integer token indices, got dtype float64"):
        forward(spec, params, X.astype(float), state)
    with pytest.raises(ValueError, match=r"\(batch_size, num_steps\)"):
        forward(spec, params, X[0], state)
    with pytest.raises(ValueError, match=r"shape \(L, B, H\) = \(2, 3, 4\).*begin_state"):
        forward(spec, params, X, tuple(s[:, :1] for s in state))
    with pytest.raises(ValueError, match="tuple of 2 array"):
        forward(spec, params, X, state[:1])
    with pytest.raises(ValueError, match="Y must have the shape of X"):
        loss_and_grads(spec, params, X, Y[:, :2], state)
    wrong = ModelSpec("lstm", 7, 4, 2)
    with pytest.raises(ValueError, match=r"'layers.0.W_xi' has shape \(6, 4\), expected \(7, 4\)"):
        forward(wrong, params, X, state)
    with pytest.raises(ValueError, match="has 2 layers but .* asks for 1"):
        forward(ModelSpec("lstm", 6, 4, 1), params, X, state)
    with pytest.raises(ValueError, match="expected .*'W_xz'.* for kind 'gru'"):
        forward(ModelSpec("gru", 6, 4, 2), params, X, state)
