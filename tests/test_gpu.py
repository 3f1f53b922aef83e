"""The checks that take a GPU: the device computes what the CPU computes.

Skipped where JAX sees no GPU; ``scripts/gpu-check.sh`` runs them on a GPU machine. Its
``--dry-run`` runs them with ``RNN_LM_TEST_DEVICE=cpu``, the CPU standing in for the device, so
that the code path is exercised everywhere.

Tolerances: float64 (the ``x64`` fixture), so that the GPU's TF32 products of float32 matmuls play
no part; the device and the CPU sum in different orders, a relative difference ~1e-15 per
operation, 1e-10 for a whole step leaves room and still catches any real mistake (those are
> 1e-3).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from conftest import CASE_IDS, CASES, rel_diff, spec_of

import rnn_jax

DEVICE = os.environ.get("RNN_LM_TEST_DEVICE", "gpu")


def _device_available() -> bool:
    try:
        rnn_jax.get_device(DEVICE)
    except ValueError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _device_available(), reason=f"no {DEVICE}: scripts/gpu-check.sh runs these on a GPU"
)
RTOL = 1e-10


def _problem(kind: str, reset: str, layers: int):
    spec = spec_of(kind, reset, 7, 5, layers)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 7, (3, 4))
    Y = rng.integers(0, 7, (3, 4))
    params = rnn_jax.init_params(spec, 0, np.float64, sigma=0.5)
    return spec, params, X, Y


def _on(device: str, params, spec, batch: int):
    placed = rnn_jax.to_jax(params, device)
    where = rnn_jax.device_of(placed)
    return placed, rnn_jax.begin_state(spec, batch, np.float64, where), where


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("grad_mode", rnn_jax.GRAD_MODES)
def test_gradients_on_the_device_match_the_cpu(x64, kind, reset, layers, grad_mode) -> None:
    spec, params, X, Y = _problem(kind, reset, layers)
    results = []
    for device in ("cpu", DEVICE):
        placed, state, where = _on(device, params, spec, X.shape[0])
        loss, grads, _ = rnn_jax.loss_and_grads(
            spec, placed, *jax.device_put((X, Y), where), state, grad_mode
        )
        results.append((float(loss), jax.device_get(grads)))
    (loss_cpu, grads_cpu), (loss_dev, grads_dev) = results
    assert abs(loss_dev - loss_cpu) <= RTOL * abs(loss_cpu)
    assert rel_diff(grads_cpu, grads_dev) <= RTOL


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_a_training_step_on_the_device_matches_the_cpu(x64, kind, reset, layers) -> None:
    spec, params, X, Y = _problem(kind, reset, layers)
    init_opt_state, step = rnn_jax.make_train_step(spec, 1.0, 1.0)
    results = []
    for device in ("cpu", DEVICE):
        placed, state, where = _on(device, params, spec, X.shape[0])
        new, _, loss, _, norm = step(
            placed, init_opt_state(placed), *jax.device_put((X, Y), where), state
        )
        results.append((float(loss), float(norm), jax.device_get(new)))
    (loss_cpu, norm_cpu, new_cpu), (loss_dev, norm_dev, new_dev) = results
    assert abs(loss_dev - loss_cpu) <= RTOL * abs(loss_cpu)
    assert abs(norm_dev - norm_cpu) <= RTOL * norm_cpu
    assert rel_diff(new_cpu, new_dev) <= RTOL


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_the_epoch_program_on_the_device_matches_the_per_step_loop_on_the_cpu(
    x64, kind, reset, layers
) -> None:
    """rnn_jax.epoch on the device (2 epochs, 2 members, several chunks) against the per-step
    loop on the CPU; 2 epochs of ~10 steps: the same per-operation bound, 1e-10."""
    from numpy_ref.data import SeqDataLoader
    from numpy_ref.population import max_batches
    from rnn_jax import epoch

    spec, _, _, _ = _problem(kind, reset, layers)
    corpus = np.random.default_rng(1).integers(0, 7, 400)
    starts = [rnn_jax.init_params(spec, seed, np.float64, sigma=0.5) for seed in (0, 1)]
    place = epoch.Placement(None, 2, range(2), rnn_jax.get_device(DEVICE))
    members = epoch.Members.create(spec, starts, [(1.0, 1.0), (0.5, 0.3)], place)
    loaders = [SeqDataLoader(corpus, 3, 4, False, seed) for seed in (0, 1)]
    steps = max_batches(len(corpus), 3, 4, False)
    for _ in range(2):
        stats = epoch.train_epoch(members, loaders, False, (3, 4), steps, chunk=7)
    for k, (lr, theta) in enumerate([(1.0, 1.0), (0.5, 0.3)]):
        params, loader = rnn_jax.to_jax(starts[k], "cpu"), SeqDataLoader(corpus, 3, 4, False, k)
        for _ in range(2):
            params, single = rnn_jax.train_epoch(spec, params, loader, lr, theta, False)
        assert abs(stats[k].perplexity - single.perplexity) <= RTOL * single.perplexity
        assert rel_diff(jax.device_get(params), members.to_numpy()[k]) <= RTOL
