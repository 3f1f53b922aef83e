"""The fast path against its plain twin, piece by piece, in float64.

``rnn_jax.reference`` is the book's equations in rows with ``lax.scan`` and ``jax.grad``; the
fast path (``rnn_jax.models`` with its cells, hand-written backwards, layers and
``rnn_jax.xla_tricks``) must compute the same numbers. Each test pairs one piece: the whole loss
and gradients, ``scan_columns`` with ``lax.scan``, each hand-written layer backward with JAX's
derivative of its plain form, each cell's step backward with ``jax.vjp`` of the reference step,
and the packed training step with the reference step, clipping and SGD on the shared dict.

Shapes are small (V 7, H 5, B 3, T 4, one or two layers), weights N(0, 0.4^2) so that every
tanh and sigmoid works off its linear part, the initial state non-zero, the tokens random.

Tolerance: every comparison is ``max |fast - reference| / max |reference|`` per array (a loss:
``|fast - reference| / reference``), held below ``RTOL = 1e-12``. In float64 (unit roundoff
1.1e-16) the two computations differ only in the order of their sums and products (stacked
gates, columns instead of rows, one product over all steps instead of one per step, optax's
norm against a plain sum); on these sizes a value passes through a few dozen rounded operations
(sums of at most V + H terms, T * L chained steps through derivatives below 1), so they differ by
some ulps: measured at most 1.7e-15 for the loss, gradients and states of every case (2026-12-04),
and 1e-12 leaves a margin of ~500 while any wrong or missing term would show at the order of the
value itself (1e-2 and up). One comparison is looser and says why: a parameter's move in a
training step, ``new - old``, keeps the rounding of the parameter (an ulp of |p| <= 2) against a
move that may be a thousand times smaller; measured at most 7.2e-14, held below 1e-10.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS

import numpy_ref.cells as np_cells
import numpy_ref.models as np_models
import rnn_jax
from numpy_ref.spec import ModelSpec, flatten_params, init_params
from rnn_jax import layers, reference
from rnn_jax.cells import CELLS, cell_for, stack_layer
from rnn_jax.training import make_train_step, pack, unpack
from rnn_jax.xla_tricks import scan_columns

V, H, B, T = 7, 5, 3, 4
RTOL = 1e-12


def problem(kind: str, reset: str, layers: int, seed: int = 0):
    """A small float64 model whose nonlinearities matter, a non-zero state, random tokens."""
    spec = ModelSpec(kind, V, H, layers, reset)
    params = init_params(spec, seed, np.float64, sigma=0.4)
    rng = np.random.default_rng(seed + 1)
    X, Y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = tuple(0.5 * rng.standard_normal((layers, B, H)) for _ in range(spec.num_states))
    return spec, params, X, Y, state


def worst(reference_tree, other_tree) -> float:
    """The largest ``max |other - reference| / max |reference|`` over the arrays of two trees
    of the same structure; fails if a reference array is all zeros (nothing to compare)."""
    ref, oth = jax.tree.leaves(reference_tree), jax.tree.leaves(other_tree)
    assert len(ref) == len(oth) > 0
    out = 0.0
    for a, b in zip(ref, oth, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        scale = float(np.max(np.abs(a)))
        assert scale > 0, "a reference array is all zeros: the comparison would prove nothing"
        out = max(out, float(np.max(np.abs(a - b))) / scale)
    return out


def test_the_reference_has_a_step_for_every_cell_of_the_table():
    assert list(reference.STEPS) == list(np_cells.CELLS) == list(CELLS)


# --- the whole model ------------------------------------------------------------------------------


@pytest.mark.parametrize("grad_mode", rnn_jax.GRAD_MODES)
@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_fast_loss_grads_and_state_match_the_reference(x64, kind, reset, layers, grad_mode):
    """models.loss_and_grads (either grad mode) = reference.loss_and_grads: the loss, every
    parameter's gradient, the state after the minibatch, from a carried non-zero state."""
    spec, params, X, Y, state = problem(kind, reset, layers)
    jparams = rnn_jax.to_jax(params, "cpu")
    ref_loss, ref_grads, ref_state = jax.jit(partial(reference.loss_and_grads, spec))(
        jparams, jnp.asarray(X), jnp.asarray(Y), state
    )
    loss, grads, new_state = rnn_jax.loss_and_grads(spec, jparams, X, Y, state, grad_mode)
    assert grads["W_hq"].dtype == jnp.float64
    assert abs(float(loss) - float(ref_loss)) < RTOL * float(ref_loss)
    assert worst(ref_grads, grads) < RTOL  # every array non-zero (worst checks it)
    assert worst(ref_state, new_state) < RTOL
    assert all(not np.allclose(a, b) for a, b in zip(ref_state, state, strict=True))  # it moved


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_the_reference_matches_numpy_refs_hand_written_bptt(x64, kind, reset, layers):
    """The reference itself against a third engine, numpy_ref (NumPy, BPTT by hand)."""
    spec, params, X, Y, state = problem(kind, reset, layers)
    np_loss, np_grads, np_state = np_models.loss_and_grads(spec, params, X, Y, state)
    loss, grads, new_state = reference.loss_and_grads(
        spec, rnn_jax.to_jax(params, "cpu"), jnp.asarray(X), jnp.asarray(Y), state
    )
    assert abs(float(loss) - np_loss) < RTOL * np_loss
    assert worst(flatten_params(np_grads), flatten_params(grads)) < RTOL
    assert worst(np_state, new_state) < RTOL


# --- scan_columns against lax.scan ----------------------------------------------------------------

K, J, M = 4, 2, 3  # the toy's feature sizes: two inputs of K, one of J; an output of M


def toy_body(carry, xs_t):
    """A step that reads every input and the carry, and writes outputs of three shapes, one of
    them matching no input (a new buffer), nested as the forward scan's are."""
    h, c = carry  # (K, B), (J, B)
    a, b, d = xs_t  # (K, B), (K, B), (J, B)
    h = jnp.tanh(0.9 * h + a * b)
    c = c * jax.nn.sigmoid(d) + h[:J]
    return (h, c), (h + b, ((), c - d), jnp.sin(h[:M]) * c[:1])


def toy_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = (
        rng.standard_normal((K, T, B)),
        rng.standard_normal((K, T, B)),
        rng.standard_normal((J, T, B)),
    )
    carry = (rng.standard_normal((K, B)), rng.standard_normal((J, B)))
    return tuple(map(jnp.asarray, carry)), tuple(map(jnp.asarray, xs))


def scan_as_lax_scan(body, carry, xs, reverse):
    """The same scan by ``lax.scan`` over (T, K, B) steps, the plain way."""
    steps = tuple(jnp.moveaxis(x, 1, 0) for x in xs)
    carry, ys = jax.lax.scan(body, carry, steps, reverse=reverse)
    return carry, jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1), ys)


@pytest.mark.parametrize("writable", [0, 1, 3])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_scan_columns_is_lax_scan_over_the_time_axis(x64, reverse, writable):
    """Forward and reverse, outputs over the inputs (writable 0, 1) or into new arrays (3):
    the same carry and outputs as lax.scan, in the same nesting."""
    carry, xs = toy_inputs()
    fast = jax.jit(partial(scan_columns, toy_body, reverse=reverse, writable=writable))
    got_carry, got_ys = fast(carry, xs)
    want_carry, want_ys = scan_as_lax_scan(toy_body, carry, xs, reverse)
    assert jax.tree.structure(got_ys) == jax.tree.structure(want_ys)
    assert worst(want_carry, got_carry) < RTOL
    assert worst(want_ys, got_ys) < RTOL
    _, other_ys = scan_as_lax_scan(toy_body, carry, xs, not reverse)
    assert worst(other_ys, want_ys) > 1e-3  # the direction matters: the test can tell
    assert not np.allclose(got_ys[0], xs[0]) and not np.allclose(got_ys[0], xs[1])


@pytest.mark.parametrize(("writable", "new_arrays"), [(0, 1), (1, 1), (2, 2), (3, 3)])
def test_scan_columns_writes_outputs_over_the_inputs_from_writable_on(x64, writable, new_arrays):
    """The speed trick itself: an output takes the buffer of a same-shaped input at or after
    ``writable`` and only the others get a new array of zeros (a ``broadcast_in_dim`` in the
    program), so an edit that loses the reuse fails here, not only in the bench."""
    carry, xs = toy_inputs()
    jaxpr = jax.make_jaxpr(partial(scan_columns, toy_body, writable=writable))(carry, xs)
    zeros = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "broadcast_in_dim"]
    assert len(zeros) == new_arrays


# --- the hand-written layers' backward against autodiff of their plain forms ------------------


def test_gather_columns_backward_is_autodiff_of_the_plain_gather(x64):
    rng = np.random.default_rng(0)
    W_x, b = jnp.asarray(rng.standard_normal((V, 6))), jnp.asarray(rng.standard_normal(6))
    tokens = jnp.asarray(np.array([[0, 3, 3], [5, 0, 1], [3, 2, 6], [1, 1, 0]]))  # (T, B)
    dA = jnp.asarray(rng.standard_normal((6, T, B)))  # a random cotangent
    out, vjp = jax.vjp(lambda W, b: layers.gather_columns(W, b, tokens), W_x, b)
    out_plain, vjp_plain = jax.vjp(lambda W, b: layers.gather_columns_plain(W, b, tokens), W_x, b)
    assert out.shape == (6, T, B) and worst(out_plain, out) < RTOL
    grads, grads_plain = vjp(dA), vjp_plain(dA)
    assert worst(grads_plain, grads) < RTOL
    assert np.all(np.asarray(grads[0][4]) == 0)  # token 4 never appears: its row gets nothing


def test_dense_backward_is_autodiff_of_the_plain_dense(x64):
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((H, T, B)))
    W, b = jnp.asarray(rng.standard_normal((H, V))), jnp.asarray(rng.standard_normal(V))
    dY = jnp.asarray(rng.standard_normal((V, T, B)))
    out, vjp = jax.vjp(layers.dense, X, W, b)
    out_plain, vjp_plain = jax.vjp(layers.dense_plain, X, W, b)
    assert out.shape == (V, T, B) and worst(out_plain, out) < RTOL
    assert worst(vjp_plain(dY), vjp(dY)) < RTOL  # dX, dW, db


def test_cross_entropy_backward_is_autodiff_of_the_plain_loss(x64):
    rng = np.random.default_rng(2)
    logits = jnp.asarray(3 * rng.standard_normal((V, T, B)))
    tokens = jnp.asarray(rng.integers(0, V, (T, B)))
    g = jnp.asarray(0.7)  # a cotangent other than 1: the backward must scale by it
    loss, vjp = jax.vjp(lambda z: layers.cross_entropy(z, tokens), logits)
    loss_plain, vjp_plain = jax.vjp(lambda z: layers.cross_entropy_plain(z, tokens), logits)
    assert abs(float(loss) - float(loss_plain)) < RTOL * float(loss_plain)
    assert worst(vjp_plain(g), vjp(g)) < RTOL


# --- each cell's hand-written step backward against jax.vjp of the reference step -------------


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_cell_step_forward_and_backward_match_the_reference_step(x64, kind, reset):
    """One step of rnn_jax.cells / cell_grads, features-major on stacked gates, against the
    reference step in rows: the next state, and for a random gradient reaching it the
    gradients of the previous state, of ``a_x`` (checked through ``dx``, ``dW_x``, ``db``:
    ``a_x = x W_x + b``) and of ``W_h`` (B2 over one step)."""
    D = 4
    spec = ModelSpec(kind, D, H, 1, reset)
    rng = np.random.default_rng(3)
    start = init_params(spec, 4, np.float64, sigma=0.4)["layers"][0]
    layer = {k: jnp.asarray(v + 0.3 * rng.standard_normal(v.shape)) for k, v in start.items()}
    x = jnp.asarray(rng.standard_normal((B, D)))
    state = tuple(jnp.asarray(0.5 * rng.standard_normal((B, H))) for _ in range(spec.num_states))
    dstate_next = tuple(jnp.asarray(rng.standard_normal((B, H))) for _ in state)

    # the reference, in rows
    step = reference.step_for(spec)
    ref_next, vjp = jax.vjp(step, layer, state, x)
    ref_dlayer, ref_dstate, ref_dx = vjp(dstate_next)

    # the fast path, features-major: a state (H, B), a step's gates (G*H, B)
    cell = cell_for(spec)
    W_x, W_h, b = stack_layer(spec, layer)  # (D, G*H), (H, G*H), (G*H,)
    a_x = (x @ W_x + b).T  # (G*H, B)
    cols = tuple(s.T for s in state)
    state_next, cache = cell.step_forward(cell.forward_weights(W_h), cols, a_x)
    assert worst(ref_next, tuple(s.T for s in state_next)) < RTOL

    seq = lambda arrays: tuple(a[:, None] for a in arrays)  # (K, B) -> (K, T=1, B)  # noqa: E731
    factors = cell.backward_factors(seq(cols), seq(state_next), seq(cache))
    dstate_prev, dstep = cell.step_backward(
        cell.backward_weights(W_h), tuple(d.T for d in dstate_next), tuple(f[:, 0] for f in factors)
    )
    dA_x, dA_rec = cell.input_grads(seq(dstep), factors)
    dW_h = cell.weight_grad(cols[0][:, None], seq(cache), dA_rec)  # (H, G*H)
    da_x = dA_x[:, 0].T  # (B, G*H), the gradient of a_x = x W_x + b in rows
    assert worst(ref_dstate, tuple(d.T for d in dstate_prev)) < RTOL
    assert worst(ref_dx, da_x @ W_x.T) < RTOL
    ref_W_x, ref_W_h, ref_b = stack_layer(spec, ref_dlayer)
    assert worst((ref_W_x, ref_W_h, ref_b), (x.T @ da_x, dW_h, da_x.sum(axis=0))) < RTOL


# --- the packed training step against the reference step on the shared dict -----------------


@pytest.mark.parametrize("grad_mode", rnn_jax.GRAD_MODES)
@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_the_packed_step_moves_every_parameter_as_the_reference_step(x64, kind, reset, grad_mode):
    """make_train_step on pack()'s form (what an epoch trains), unpacked, = reference.train_step
    (value_and_grad, the book's clipping, SGD) on the shared dict: every parameter, the loss, the
    gradient norm and the state; with the clipping in effect (theta half the norm)."""
    spec, params, X, Y, state = problem(kind, reset, 2)
    start = rnn_jax.to_jax(params, "cpu")
    X_j, Y_j = jnp.asarray(X), jnp.asarray(Y)
    ref_step = jax.jit(partial(reference.train_step, spec))  # lr, theta traced: one compile
    lr, unclipped = 0.7, float(ref_step(start, X_j, Y_j, state, 0.7, np.inf)[-1])
    theta = 0.5 * unclipped  # the clipping halves the step
    ref_params, ref_loss, ref_state, ref_norm = ref_step(start, X_j, Y_j, state, lr, theta)

    init_opt_state, step = make_train_step(spec, lr, theta, grad_mode)
    packed = pack(spec, params, rnn_jax.get_device("cpu"))
    new_packed, _, loss, new_state, norm = step(packed, init_opt_state(packed), X, Y, state)
    assert abs(float(norm) - float(ref_norm)) < RTOL * float(ref_norm)
    assert abs(float(loss) - float(ref_loss)) < RTOL * float(ref_loss)
    assert worst(ref_state, new_state) < RTOL
    moved = unpack(spec, new_packed)
    # every parameter's move, relative to the move (module docstring: 1e-10); all non-zero
    ref_moves = jax.tree.map(lambda new, old: new - old, ref_params, start)
    assert worst(ref_moves, jax.tree.map(lambda new, old: new - old, moved, start)) < 1e-10
    assert worst(ref_params, moved) < RTOL
