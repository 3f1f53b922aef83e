"""Three engines, one gradient: numpy_ref's hand-written BPTT, ``jax.grad`` through the scan
(``grad_mode="autodiff"``) and rnn_jax's custom backward (``grad_mode="bptt"``); plus finite
differences, logits, loss and the state after the minibatch.

Every model kind, both GRU reset variants, one and two layers; weights N(0, 0.4^2) so that every
tanh and sigmoid works off its linear part, a non-zero initial state, random tokens.

Tolerances, all relative to the scale of the reference (its largest absolute entry):

- float64 (JAX's x64 mode, switched on per test by the ``x64`` fixture of conftest):
  the engines differ only in summation order, a few hundred ulps (2.2e-16) at most on these
  sizes; 1e-10 leaves a margin of ~1e4 and still catches any wrong term, whose error would be of
  the order of the gradient itself.
- float32: the same rounding at 1.2e-7 per operation, over ~T*L chained steps: 1e-4.
- finite differences (float64, central, step 1e-6): truncation ~ 1e-12 and cancellation
  ~ 1e-16 / 1e-6 = 1e-10 of the loss; held to 1e-7 of the gradient's scale.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS, rel_diff, state_rel_diff

import numpy_ref.models as np_models
import rnn_jax
from numpy_ref.spec import ModelSpec, flatten_params, init_params, unflatten_params

V, H, B, T = 7, 5, 3, 4


def problem(kind: str, reset: str, layers: int, dtype=np.float64, seed: int = 0):
    """A small model whose nonlinearities matter, a non-zero state and random tokens."""
    spec = ModelSpec(kind, V, H, layers, reset)
    params = init_params(spec, seed, dtype, sigma=0.4)
    rng = np.random.default_rng(seed + 1)
    X = rng.integers(0, V, (B, T))
    Y = rng.integers(0, V, (B, T))
    state = tuple(
        (0.5 * rng.standard_normal((layers, B, H))).astype(dtype) for _ in range(spec.num_states)
    )
    return spec, params, X, Y, state


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_numpy_autodiff_and_custom_backward_agree_float64(x64, kind, reset, layers):
    spec, params, X, Y, state = problem(kind, reset, layers)
    loss_ref, grads_ref, state_ref = np_models.loss_and_grads(spec, params, X, Y, state)
    logits_ref, _ = np_models.forward(spec, params, X, state)
    jparams = rnn_jax.to_jax(params, "cpu")
    for grad_mode in rnn_jax.GRAD_MODES:
        loss, grads, new_state = rnn_jax.loss_and_grads(spec, jparams, X, Y, state, grad_mode)
        assert grads["W_hq"].dtype == jnp.float64
        assert rel_diff(grads_ref, grads) < 1e-10, grad_mode
        assert abs(float(loss) - loss_ref) < 1e-10 * loss_ref, grad_mode
        assert state_rel_diff(state_ref, new_state) < 1e-10, grad_mode
    logits, _ = rnn_jax.forward(spec, jparams, X, state)
    assert logits.shape == logits_ref.shape == (T, B, V)
    assert np.max(np.abs(np.asarray(logits) - logits_ref)) < 1e-10 * np.max(np.abs(logits_ref))


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_numpy_and_custom_backward_agree_float32(kind, reset, layers):
    spec, params, X, Y, state = problem(kind, reset, layers, np.float32)
    loss_ref, grads_ref, state_ref = np_models.loss_and_grads(spec, params, X, Y, state)
    loss, grads, new_state = rnn_jax.loss_and_grads(spec, rnn_jax.to_jax(params), X, Y, state)
    assert grads["W_hq"].dtype == jnp.float32
    assert rel_diff(grads_ref, grads) < 1e-4
    assert abs(float(loss) - loss_ref) < 1e-4 * loss_ref
    assert state_rel_diff(state_ref, new_state) < 1e-4


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_custom_backward_matches_finite_differences(x64, kind, reset):
    """Two layers: the recurrent weights of both layers, the input gather of layer 0 and the
    input product of layer 1 are all probed."""
    spec, params, X, Y, state = problem(kind, reset, 2)
    flat = flatten_params(rnn_jax.to_jax(params, "cpu"))
    _, grads, _ = rnn_jax.loss_and_grads(spec, unflatten_params(flat), X, Y, state, "bptt")
    flat_grads = flatten_params(grads)
    scale = max(float(jnp.max(jnp.abs(g))) for g in flat_grads.values())
    rng = np.random.default_rng(3)
    eps = 1e-6

    def loss_with(key, index, delta):
        shifted = dict(flat)
        shifted[key] = flat[key].at[index].add(delta)
        return float(rnn_jax.forward_loss(spec, unflatten_params(shifted), X, Y, state)[0])

    for key in flat:  # two random entries of every array
        for _ in range(2):
            index = tuple(int(rng.integers(n)) for n in flat[key].shape)
            numeric = (loss_with(key, index, eps) - loss_with(key, index, -eps)) / (2 * eps)
            assert abs(numeric - float(flat_grads[key][index])) < 1e-7 * scale, (key, index)
