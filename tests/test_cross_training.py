"""numpy_ref and rnn_jax train, evaluate, generate and checkpoint alike.

Clipping: numpy_ref's written-out rule against ``optax.clip_by_global_norm``. Training: the same
seed, the same loader (the book's corpus through numpy_ref's pipeline), three epochs under
sequential and random iteration. Generation and checkpoints: one set of parameters, both ways.

Tolerances (relative). Float64: one training step agrees to ~1e-15 (summation order); three
epochs of SGD with lr 1 amplify that by at most the trajectory's sensitivity, far below the
1e-9 allowed for perplexities and parameters; a wrong step (no clip, another lr, a state not
carried) changes them at the 1e-2 level. Float32: perplexities to 1e-3 (per-step rounding
1e-7 accumulates over the epochs' ~150 steps and the chaotic trajectory of lr 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS, rel_diff

import numpy_ref.models as np_models
import rnn_jax
from numpy_ref import generation as np_generate
from numpy_ref import optim as np_optim
from numpy_ref import training as np_train
from numpy_ref.checkpoint import load_checkpoint, save_checkpoint
from numpy_ref.data import load_data_time_machine
from numpy_ref.spec import ModelSpec, init_params, map_params
from numpy_ref.vocab import Vocab, tokenize

# --- clipping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["below", "at", "above"])
def test_numpy_clip_equals_optax_clip_by_global_norm(x64, where):
    spec = ModelSpec("lstm", 6, 4, 2)
    rng = np.random.default_rng({"below": 0, "at": 1, "above": 2}[where])
    grads = map_params(lambda p: rng.standard_normal(p.shape), init_params(spec, 0, np.float64))
    norm = np_optim.global_norm(grads)
    theta = {"below": 2.0 * norm, "at": norm, "above": 0.25 * norm}[where]
    expected = np_optim.clip_by_global_norm(grads, theta)
    clip = optax.clip_by_global_norm(theta)
    jgrads = rnn_jax.to_jax(grads, "cpu")
    clipped, _ = clip.update(jgrads, clip.init(jgrads))
    # float64: optax computes (g / norm) * theta, numpy g * (theta / norm), norms summed in
    # another order; at norm == theta one side may scale by 1 +- 1 ulp. A few ulps: 1e-14.
    assert rel_diff(expected, clipped) < 1e-14
    if where == "below":  # unchanged, bit for bit
        assert rel_diff(grads, clipped) == 0.0
    if where == "above":  # the norm becomes theta
        assert abs(np_optim.global_norm(jax.tree.map(np.asarray, clipped)) - theta) < 1e-14 * theta
        assert rel_diff(grads, clipped) > 0.5


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_one_train_step_equals_numpy_clip_and_sgd(x64, kind, reset):
    spec = ModelSpec(kind, 7, 5, 2, reset)
    params = init_params(spec, 0, np.float64, sigma=0.4)
    rng = np.random.default_rng(1)
    X, Y = rng.integers(0, 7, (3, 4)), rng.integers(0, 7, (3, 4))
    state = tuple(0.5 * rng.standard_normal((2, 3, 5)) for _ in range(spec.num_states))
    lr, theta = 0.7, 0.05
    loss_ref, grads, _ = np_models.loss_and_grads(spec, params, X, Y, state)
    assert np_optim.global_norm(grads) > theta  # the clipping branch is taken
    expected = np_optim.sgd(params, np_optim.clip_by_global_norm(grads, theta), lr)
    init_opt_state, step = rnn_jax.make_train_step(spec, lr, theta)
    jparams = rnn_jax.to_jax(params, "cpu")
    new, _, loss, _, norm = step(jparams, init_opt_state(jparams), X, Y, state)
    assert abs(float(loss) - loss_ref) < 1e-12 * loss_ref
    assert abs(float(norm) - np_optim.global_norm(grads)) < 1e-12 * float(norm)  # before clipping
    assert rel_diff(expected, new) < 1e-12


# --- training trajectories on the book's corpus --------------------------------------------------


def _train_both(spec, dtype, use_random_iter, num_epochs=3):
    """Train numpy_ref and rnn_jax from init_params(seed 0) on two loaders with one seed."""
    kwargs = dict(batch_size=8, num_steps=10, use_random_iter=use_random_iter, max_tokens=1500)
    loader_np, vocab = load_data_time_machine(**kwargs, seed=5)
    loader_jax, _ = load_data_time_machine(**kwargs, seed=5)
    spec = ModelSpec(spec.kind, len(vocab), spec.num_hiddens, spec.num_layers, spec.gru_reset)
    params = init_params(spec, 0, dtype, sigma=0.1)
    args = (vocab, 1.0, 1.0, num_epochs, use_random_iter)
    params_np, hist_np = np_train.train(spec, params, loader_np, *args)
    params_jax, hist_jax = rnn_jax.train(spec, rnn_jax.to_jax(params, "cpu"), loader_jax, *args)
    ppl_np = np.array([h.perplexity for h in hist_np])
    ppl_jax = np.array([h.perplexity for h in hist_jax])
    return spec, params_np, params_jax, ppl_np, ppl_jax, loader_np, loader_jax


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_training_trajectories_agree_float64(corpus_env, x64, kind, reset, layers):
    for use_random_iter in (False, True):
        spec = ModelSpec(kind, 1, 8, layers, reset)
        spec, params_np, params_jax, ppl_np, ppl_jax, loader_np, loader_jax = _train_both(
            spec, np.float64, use_random_iter
        )
        assert ppl_np[-1] < ppl_np[0]  # it trained
        np.testing.assert_allclose(ppl_jax, ppl_np, rtol=1e-9, atol=0)
        assert rel_diff(params_np, params_jax) < 1e-9
        if not use_random_iter:  # evaluation: state carried, no update
            ppl_eval_np = np_train.evaluate(spec, params_np, loader_np)
            ppl_eval_jax = rnn_jax.evaluate(spec, params_jax, loader_jax)
            assert abs(ppl_eval_jax - ppl_eval_np) < 1e-9 * ppl_eval_np


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_training_perplexities_agree_float32(corpus_env, kind, reset):
    spec = ModelSpec(kind, 1, 8, 2, reset)
    _, _, _, ppl_np, ppl_jax, _, _ = _train_both(spec, np.float32, False)
    np.testing.assert_allclose(ppl_jax, ppl_np, rtol=1e-3, atol=0)


# --- generation and checkpoints ------------------------------------------------------------------

TEXT = ["the time traveller for so it will be convenient to speak of him was expounding"]


def _model(kind: str, reset: str, dtype=np.float32):
    vocab = Vocab(tokenize(TEXT, "char"))
    spec = ModelSpec(kind, len(vocab), 16, 2, reset)
    return spec, init_params(spec, 3, dtype, sigma=0.5), vocab


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_greedy_and_sampled_text_are_identical(kind, reset):
    spec, params, vocab = _model(kind, reset)
    jparams = rnn_jax.to_jax(params, "cpu")
    greedy = np_generate.predict("time traveller", 50, spec, params, vocab)
    assert rnn_jax.predict("time traveller", 50, spec, jparams, vocab) == greedy
    assert greedy.startswith("time traveller") and len(set(greedy[14:])) > 3  # not one repeat
    sampled = np_generate.predict("the", 30, spec, params, vocab, temperature=1.0, seed=7)
    assert rnn_jax.predict("the", 30, spec, jparams, vocab, temperature=1.0, seed=7) == sampled


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_checkpoints_cross_load(tmp_path, kind, reset):
    spec, params, vocab = _model(kind, reset)
    expected = np_generate.predict("time", 30, spec, params, vocab)

    jparams = rnn_jax.to_jax(params, "cpu")
    save_checkpoint(tmp_path / "jax.npz", spec, jparams, vocab, epoch=3)
    loaded = load_checkpoint(tmp_path / "jax.npz", spec, vocab)  # saved by JAX, read by NumPy
    assert loaded.epoch == 3 and rel_diff(params, loaded.params) == 0.0
    assert np_generate.predict("time", 30, loaded.spec, loaded.params, loaded.vocab) == expected

    save_checkpoint(tmp_path / "numpy.npz", spec, params, vocab)
    loaded = load_checkpoint(tmp_path / "numpy.npz")  # saved by NumPy, run by JAX
    reloaded = rnn_jax.to_jax(loaded.params, "cpu")
    assert (
        all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(reloaded))
        and rel_diff(params, reloaded) == 0.0
    )
    assert rnn_jax.predict("time", 30, loaded.spec, reloaded, loaded.vocab) == expected
