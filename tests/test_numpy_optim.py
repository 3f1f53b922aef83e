"""Global-norm clipping and SGD: the book's rule, new dicts, no mutation.

Tolerances: a norm recomputed after scaling carries the rounding of the scaling and of the sum
of squares, a few units of the dtype's epsilon times sqrt(number of elements) at most: ``1e-13``
relative in float64 and ``1e-6`` in float32 (eps 1.2e-7) for these sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_ref.optim import clip_by_global_norm, global_norm, sgd
from numpy_ref.spec import ModelSpec, flatten_params, init_params, map_params

RTOL = {np.float64: 1e-13, np.float32: 1e-6}


def grads_like(kind="lstm", layers=2, dtype=np.float64, seed=0, scale=1.0):
    spec = ModelSpec(kind, 5, 3, layers)
    return init_params(spec, seed=seed, dtype=dtype, sigma=scale)


def copies(tree):
    return {k: v.copy() for k, v in flatten_params(tree).items()}


def assert_same(tree, flat_copy):
    for key, value in flatten_params(tree).items():
        assert np.array_equal(value, flat_copy[key]), key


def test_global_norm_is_the_norm_of_all_elements_together() -> None:
    grads = grads_like()
    everything = np.concatenate([g.ravel() for g in flatten_params(grads).values()])
    assert global_norm(grads) == pytest.approx(np.linalg.norm(everything), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_below_theta_returns_the_same_values_in_new_arrays(dtype) -> None:
    grads = grads_like(dtype=dtype, scale=0.01)
    norm = global_norm(grads)
    before = copies(grads)
    clipped = clip_by_global_norm(grads, theta=norm * 1.5)
    assert_same(clipped, before)  # bit-exact
    assert_same(grads, before)
    for key, value in flatten_params(clipped).items():
        assert value.dtype == dtype
        assert not np.shares_memory(value, flatten_params(grads)[key])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_above_theta_scales_every_gradient_to_norm_theta(dtype) -> None:
    grads = grads_like(dtype=dtype, scale=3.0)
    norm = global_norm(grads)
    before = copies(grads)
    clipped = clip_by_global_norm(grads, theta=1.0)
    assert norm > 1.0
    assert global_norm(clipped) == pytest.approx(1.0, rel=RTOL[dtype])
    assert_same(grads, before)  # the input is untouched
    for key, value in flatten_params(clipped).items():
        assert value.dtype == dtype
        # the same direction: each array is the original times theta / norm
        np.testing.assert_allclose(value, before[key] / norm, rtol=RTOL[dtype] * 10)


@settings(max_examples=100, deadline=None)
@given(
    scale=st.floats(1e-3, 1e3),
    theta=st.floats(1e-2, 1e2),
    seed=st.integers(0, 1000),
    kind=st.sampled_from(["rnn", "gru", "lstm"]),
)
def test_clipped_norm_is_min_of_norm_and_theta(scale, theta, seed, kind) -> None:
    grads = grads_like(kind, seed=seed, scale=scale)
    norm = global_norm(grads)
    clipped = clip_by_global_norm(grads, theta)
    assert global_norm(clipped) == pytest.approx(min(norm, theta), rel=1e-13)


def test_clipping_rejects_a_non_positive_theta() -> None:
    with pytest.raises(ValueError, match="theta must be > 0 .* got 0"):
        clip_by_global_norm(grads_like(), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_is_p_minus_lr_g_in_new_arrays_of_the_same_dtype(dtype) -> None:
    params, grads = grads_like(dtype=dtype, seed=1), grads_like(dtype=dtype, seed=2)
    p_before, g_before = copies(params), copies(grads)
    updated = sgd(params, grads, lr=0.5)
    expected = map_params(lambda p, g: p - dtype(0.5) * g, params, grads)
    assert_same(updated, copies(expected))
    assert_same(params, p_before)
    assert_same(grads, g_before)
    assert all(v.dtype == dtype for v in flatten_params(updated).values())
    assert math.isclose(
        global_norm(map_params(np.subtract, params, updated)),
        0.5 * global_norm(grads),
        rel_tol=1e-6,
    )
