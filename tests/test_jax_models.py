"""rnn_jax on its own: shapes and time order, the jit-compiled training step (caching, donation,
descent), options and devices. The numbers themselves are checked against numpy_ref and finite
differences in tests/test_cross_gradients.py and tests/test_cross_training.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VARIANT_IDS, VARIANTS, counting_compiles

import rnn_jax
from numpy_ref.spec import ModelSpec, init_params


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_forward_shapes_and_time_major_order(kind, reset):
    V, H, L, B, T = 7, 5, 2, 3, 4
    spec = ModelSpec(kind, V, H, L, reset)
    params = rnn_jax.to_jax(init_params(spec, 0, sigma=0.4), "cpu")
    rng = np.random.default_rng(1)
    X = rng.integers(0, V, (B, T))
    state = tuple(
        jnp.asarray(0.5 * rng.standard_normal((L, B, H)), jnp.float32)
        for _ in range(spec.num_states)
    )
    logits, new_state = rnn_jax.forward(spec, params, X, state)
    assert logits.shape == (T, B, V) and logits.dtype == jnp.float32
    assert len(new_state) == spec.num_states
    assert all(s.shape == (L, B, H) for s in new_state)
    # step by step from the same state gives the same logits: row t of the time-major output
    step_state = state
    for t in range(T):
        step_logits, step_state = rnn_jax.forward(spec, params, X[:, t : t + 1], step_state)
        np.testing.assert_allclose(step_logits[0], logits[t], rtol=1e-5, atol=1e-6)
    for a, b in zip(step_state, new_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_first_loss_is_log_vocab_and_training_lowers_it(kind, reset):
    spec = ModelSpec(kind, 11, 16, 1, reset)
    params = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    text = np.tile(np.arange(11), 20)  # a cycle: every next token is predictable
    starts = (0, 3, 5, 8)
    X = np.stack([text[s : s + 12] for s in starts])
    Y = np.stack([text[s + 1 : s + 13] for s in starts])
    init_opt_state, step = rnn_jax.make_train_step(spec, 1.0, 1.0)
    opt_state = init_opt_state(params)
    state = rnn_jax.begin_state(spec, 4)
    losses = []
    for _ in range(30):
        params, opt_state, loss, _, _ = step(params, opt_state, X, Y, state)
        losses.append(float(loss))
    assert abs(losses[0] - np.log(11)) < 0.01  # weights N(0, 0.01^2): uniform predictions
    # the same minibatch every step: a descent direction lowers the loss at every step (a wrong
    # sign or a missing term of the gradient would not); small weights learn slowly at first
    assert np.all(np.diff(losses) < 0)
    assert losses[-1] < losses[0] - 0.005


def test_train_step_is_compiled_once_and_cached():
    spec = ModelSpec("rnn", 7, 5)
    assert rnn_jax.make_train_step(spec, 1.0, 1.0) is rnn_jax.make_train_step(spec, 1.0, 1.0)
    init_opt_state, step = rnn_jax.make_train_step(spec, 0.5, 1.0, "bptt")
    params = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    opt_state = init_opt_state(params)
    state = rnn_jax.begin_state(spec, 2)
    rng = np.random.default_rng(0)
    counts = []  # programs compiled so far, after each step
    with counting_compiles() as compiles:
        for _ in range(3):  # new minibatches of the same shapes
            X, Y = rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))
            params, opt_state, *_ = step(params, opt_state, X, Y, state)
            counts.append(len(compiles))
        again = rnn_jax.make_train_step(spec, 0.5, 1.0, "bptt")[1]  # the same step, cached
        again(params, opt_state, X, Y, state)
        counts.append(len(compiles))
    assert counts == [1, 1, 1, 1]  # one program, compiled at the first step only


def test_train_step_donates_params_and_train_epoch_leaves_the_callers_alone():
    spec = ModelSpec("gru", 7, 5)
    params = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    before = jax.tree.map(np.array, params)
    rng = np.random.default_rng(0)
    loader = [(rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3))) for _ in range(3)]
    trained, stats = rnn_jax.train_epoch(spec, params, loader, 1.0, 1.0, False)
    assert stats.num_tokens == 18 and np.isfinite(stats.perplexity)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))  # still readable, unchanged
    assert not np.array_equal(np.asarray(trained["W_hq"]), before["W_hq"])

    init_opt_state, step = rnn_jax.make_train_step(spec, 1.0, 1.0)
    fresh = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    step(fresh, init_opt_state(fresh), *loader[0], rnn_jax.begin_state(spec, 2))
    assert fresh["W_hq"].is_deleted()  # donated: XLA reused the buffer


def test_bad_options_are_named():
    spec = ModelSpec("rnn", 7, 5)
    with pytest.raises(ValueError, match="grad_mode"):
        rnn_jax.make_train_step(spec, 1.0, 1.0, "backprop")
    with pytest.raises(ValueError, match="theta"):
        rnn_jax.make_train_step(spec, 1.0, 0.0)
    for lr in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            rnn_jax.make_train_step(spec, lr, 1.0)
    params = rnn_jax.to_jax(init_params(spec, 0), "cpu")
    with pytest.raises(ValueError, match="grad_mode"):
        rnn_jax.loss_and_grads(
            spec,
            params,
            np.zeros((1, 1), int),
            np.zeros((1, 1), int),
            rnn_jax.begin_state(spec, 1),
            "numeric",
        )


def test_float64_params_need_x64_mode():
    spec = ModelSpec("rnn", 7, 5)
    params = init_params(spec, 0, np.float64)
    with pytest.raises(ValueError, match="x64"):
        rnn_jax.to_jax(params, "cpu")
    batch = (np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match="x64"):  # not a silent cast to float32
        rnn_jax.train_epoch(spec, params, [batch], 1.0, 1.0, False)


def test_device_names_and_missing_gpu():
    cpu = rnn_jax.get_device("cpu")
    assert cpu.platform == "cpu" and rnn_jax.device_name(cpu) == "cpu:0"
    assert rnn_jax.get_device("cpu:0") == cpu
    auto = rnn_jax.get_device("auto")
    assert rnn_jax.get_device(None) == auto
    with pytest.raises(ValueError, match="not a device name"):
        rnn_jax.get_device("tpu-ish")
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert auto == cpu
        for name in ("gpu", "cuda", "cuda:0"):
            with pytest.raises(ValueError, match="GPU"):
                rnn_jax.get_device(name)
    params = rnn_jax.to_jax(init_params(ModelSpec("rnn", 7, 5), 0), "cpu")
    assert rnn_jax.device_of(params) == cpu
    assert all(leaf.devices() == {cpu} for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_the_packed_step_is_the_shared_dicts_step(kind, reset):
    """train_epoch trains pack()'s form: unpack(pack(p)) is p exactly (the same keys, arrays and
    dtypes), and a step on the packed form moves every parameter as the step on the shared dict
    does (to float32 rounding: only the gradient norm's sum runs in another order)."""
    from rnn_jax.training import pack, unpack

    spec = ModelSpec(kind, 9, 6, 2, reset)
    params = init_params(spec, 0, sigma=0.4)
    packed = pack(spec, params)
    assert all(sorted(layer) == ["W_h", "W_x", "b"] for layer in packed["layers"])
    G = len(spec.gates)
    assert packed["layers"][1]["W_x"].shape == (6, G * 6)
    back = unpack(spec, packed)
    assert jax.tree.structure(back) == jax.tree.structure(params)  # the same keys everywhere
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), b)

    rng = np.random.default_rng(2)
    X, Y = rng.integers(0, 9, (3, 5)), rng.integers(0, 9, (3, 5))
    init_opt_state, step = rnn_jax.make_train_step(spec, 1.0, 0.5)
    state = rnn_jax.begin_state(spec, 3)
    shared = rnn_jax.to_jax(params, "cpu")
    new_shared, _, loss_shared, _, norm_shared = step(shared, init_opt_state(shared), X, Y, state)
    new_packed, _, loss_packed, _, norm_packed = step(packed, init_opt_state(packed), X, Y, state)
    np.testing.assert_allclose(loss_packed, loss_shared, rtol=1e-6)
    np.testing.assert_allclose(norm_packed, norm_shared, rtol=1e-6)
    moved = jax.tree.leaves(unpack(spec, new_packed))
    for a, b in zip(moved, jax.tree.leaves(new_shared), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    start = jax.tree.leaves(params)
    assert all(not np.array_equal(a, b) for a, b in zip(moved, start, strict=True))  # all moved
