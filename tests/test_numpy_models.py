"""The NumPy models' forward pass: shapes, dtypes, the state, the gather input, the output layer.

Tolerances: float64 results computed two ways that differ only in the order of the sums (a
blocked matrix product against a per-step one, ``np.add.at`` against a one-hot product) agree to
a few units of roundoff, ``~ K * 2.2e-16`` for sums of ``K <= 10`` terms of size ~1: we use
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
    backward,
    dense_all_steps,
    forward,
    forward_loss,
    forward_with_cache,
    gather_input,
    gather_input_backward,
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
            a_x = np.concatenate([x @ layer[f"W_x{g}"] + layer[f"b_{g}"] for g in cell.gates], 1)
            W_h = np.concatenate([layer[f"W_h{g}"] for g in cell.gates], axis=1)
            new, _ = cell.step_forward(W_h, tuple(s[index] for s in state), a_x)
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


def test_gather_input_is_exactly_the_one_hot_product() -> None:
    # Exact: each output element is 1.0 * w plus zeros, and both are exact in floating point.
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 4))
    tokens = rng.integers(0, 7, size=(5, 3))
    gathered = gather_input(W, tokens)
    assert gathered.shape == (5, 3, 4)
    assert np.array_equal(gathered, one_hot(tokens, 7) @ W)


def test_gather_backward_is_the_one_hot_transpose_product_with_repeated_tokens() -> None:
    rng = np.random.default_rng(1)
    tokens = np.array([[0, 2, 2], [2, 5, 0]])  # repeats: add.at must sum them all
    dA = rng.standard_normal((2, 3, 4))
    dW = gather_input_backward(dA, tokens, 7)
    expected = one_hot(tokens, 7).reshape(-1, 7).T @ dA.reshape(-1, 4)
    np.testing.assert_allclose(dW, expected, rtol=ROUNDOFF, atol=ROUNDOFF)
    assert not dW[[1, 3, 4, 6]].any()


def test_output_layer_over_all_steps_equals_a_per_step_loop() -> None:
    rng = np.random.default_rng(2)
    H_all, W_hq, b_q = rng.standard_normal((5, 3, 4)), rng.standard_normal((4, 6)), rng.random(6)
    logits = dense_all_steps(H_all, W_hq, b_q)
    per_step = np.stack([H_all[t] @ W_hq + b_q for t in range(5)])
    np.testing.assert_allclose(logits, per_step, rtol=ROUNDOFF, atol=ROUNDOFF)


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


def test_forward_loss_equals_loss_and_grads_loss() -> None:
    spec, params, X, Y, state = random_case("lstm")
    loss, state_a = forward_loss(spec, params, X, Y, state)
    loss_b, _, state_b = loss_and_grads(spec, params, X, Y, state)
    assert loss == loss_b
    assert all(np.array_equal(a, b) for a, b in zip(state_a, state_b, strict=True))


def test_backward_returns_grads_with_the_params_layout() -> None:
    spec, params, X, _, state = random_case("gru", layers=3)
    logits, _, cache = forward_with_cache(spec, params, X, state)
    grads, dstate = backward(spec, params, cache, np.ones_like(logits))
    assert list(flatten_params(grads)) == list(flatten_params(params))
    for key, value in flatten_params(params).items():
        assert flatten_params(grads)[key].shape == value.shape
    assert [s.shape for s in dstate] == [state[0].shape]


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
