"""PyTorch agrees with numpy_ref and rnn_jax: logits, gradients, one clipped SGD step, in float64.

Every comparison starts from one parameter dict mapped into each framework's layout
(``experiments.torch_ref.to_torch_state``), so a wrong gate order, a missing transpose, a reset
gate on the wrong side or a different clipping rule shows up as a mismatch.

Tolerance: in float64 (unit roundoff 1.1e-16) these tiny models (T <= 5 steps, sums over at most
a few dozen terms) reach the same numbers through differently ordered sums; the differences are a
few hundred ulps at most (~1e-14). ``rtol=1e-10, atol=1e-12`` leaves orders of magnitude of
margin above that, yet sits far below the smallest semantic mistake we could make (a float32
rounding is ~1e-7, a dropped ``1e-6`` in clipping is ~1e-7 relative, a wrong gate is O(1)).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="PyTorch is an optional extra (.venv/bin/pip install -e '.[torch]'): parity needs it",
)

from conftest import VARIANT_IDS, VARIANTS  # noqa: E402

from experiments import torch_ref  # noqa: E402
from numpy_ref.cells import CELLS  # noqa: E402
from numpy_ref.spec import ModelSpec, flatten_params, init_params, unflatten_params  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12

# (kind, layers, gru_reset): every cell of the table with one and two layers.
CASES = [(kind, layers, reset) for kind, reset in VARIANTS for layers in (1, 2)]
CASE_IDS = [f"{name}-L{layers}" for name in VARIANT_IDS for layers in (1, 2)]
IDS = dict(zip(CASES, CASE_IDS, strict=True))
# the cells PyTorch has an nn module for (nn.GRU is the "after" variant)
NN_CASES = [
    c
    for c in CASES
    if torch_ref.TORCH_CELLS[ModelSpec(c[0], 2, 2, 1, c[2]).cell.name].nn_module is not None
]
# JAX compiles every model anew (about a second each), so its tests take every cell with one
# layer plus one 2-layer model rather than every case; numpy_ref covers all of CASES.
JAX_CASES = [c for c in CASES if c[1] == 1] + [("lstm", 2, "before")]
STEP_CASES = [c for c in CASES if c[1] == 1 and c[0] != "lstm"] + [("lstm", 2, "before")]
B, T, V, H = 3, 5, 7, 6


def test_every_cell_has_a_pytorch_counterpart() -> None:
    assert list(torch_ref.TORCH_CELLS) == list(CELLS)


def random_params(spec: ModelSpec, seed: int = 0) -> dict:
    """float64 parameters far from the book's tiny init, with nonzero biases.

    With N(0, 0.01^2) weights every gate sits near 0.5 and gradients near zero, where a wrong
    formula can still pass; sigma 0.5 and random biases put every nonlinearity in its curved part.
    """
    params = init_params(spec, seed, np.float64, sigma=0.5)
    rng = np.random.default_rng(seed + 100)
    flat = flatten_params(params)
    for key, value in flat.items():
        if key.rsplit(".", 1)[-1].startswith("b_"):
            flat[key] = rng.normal(0.0, 0.5, value.shape)
    return unflatten_params(flat)


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


def nonzero_state(spec: ModelSpec, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A carried (not zero) state, as sequential iteration passes from batch to batch."""
    rng = np.random.default_rng(seed + 7)
    shape = (spec.num_layers, B, spec.num_hiddens)
    return tuple(rng.uniform(-0.9, 0.9, shape) for _ in range(spec.num_states))


def torch_models(spec: ModelSpec, params: dict) -> list:
    """The PyTorch models that implement ``spec``: always the scratch one; nn.* unless "before"."""
    models = [torch_ref.ScratchLM(spec, params)]
    if not (spec.kind == "gru" and spec.gru_reset == "before"):
        models.append(torch_ref.ConciseLM(spec, params))
    return models


def assert_params_close(actual: dict, expected: dict) -> None:
    a, e = flatten_params(actual), flatten_params(expected)
    assert a.keys() == e.keys()
    for key in e:
        np.testing.assert_allclose(a[key], e[key], rtol=RTOL, atol=ATOL, err_msg=key)


def torch_state(state: tuple[np.ndarray, ...]) -> tuple:
    return tuple(torch.tensor(s) for s in state)


# --- PyTorch against itself and the mapping ------------------------------------------------------


@pytest.mark.parametrize(("kind", "layers", "reset"), NN_CASES, ids=[IDS[c] for c in NN_CASES])
def test_scratch_and_nn_modules_agree(kind: str, layers: int, reset: str) -> None:
    spec = ModelSpec(kind, V, H, layers, reset)
    models = torch_models(spec, random_params(spec))
    X, Y = batch()
    state = nonzero_state(spec)
    (la, ga, sa), (lb, gb, sb) = (
        torch_ref.loss_and_grads(m, X, Y, torch_state(state)) for m in models
    )
    np.testing.assert_allclose(la, lb, rtol=RTOL, atol=ATOL)
    assert_params_close(ga, gb)
    for s_a, s_b in zip(sa, sb, strict=True):
        np.testing.assert_allclose(s_a.numpy(), s_b.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("kind", "layers", "reset"), NN_CASES, ids=[IDS[c] for c in NN_CASES])
def test_weight_mapping_round_trips(kind: str, layers: int, reset: str) -> None:
    spec = ModelSpec(kind, V, H, layers, reset)
    params = random_params(spec)
    state = torch_ref.to_torch_state(spec, params)
    G = len(spec.gates)
    D = V
    assert state["rnn.weight_ih_l0"].shape == (G * H, D)
    assert state["rnn.weight_hh_l0"].shape == (G * H, H)
    assert not np.any(state["rnn.bias_hh_l0"])
    back = torch_ref.from_torch_state(spec, state)
    a, e = flatten_params(back), flatten_params(params)
    for key in e:
        np.testing.assert_array_equal(a[key], e[key], err_msg=key)


def test_gate_order_follows_pytorch() -> None:
    """Rows of weight_ih are r, z, n for GRU and i, f, g, o for LSTM (PyTorch's documentation)."""
    for kind, order in (("gru", "rzh"), ("lstm", "ifco")):
        spec = ModelSpec(kind, V, H, gru_reset="after")
        params = random_params(spec)
        state = torch_ref.to_torch_state(spec, params)
        for i, g in enumerate(order):
            np.testing.assert_array_equal(
                state["rnn.weight_ih_l0"][i * H : (i + 1) * H], params["layers"][0][f"W_x{g}"].T
            )


def test_mapping_back_folds_bias_hh_and_refuses_a_nonzero_gru_b_hn() -> None:
    spec = ModelSpec("lstm", V, H)
    state = torch_ref.to_torch_state(spec, random_params(spec))
    state["rnn.bias_hh_l0"] = np.full(4 * H, 0.25)
    back = torch_ref.from_torch_state(spec, state)
    np.testing.assert_allclose(back["layers"][0]["b_i"], state["rnn.bias_ih_l0"][:H] + 0.25)

    spec = ModelSpec("gru", V, H, gru_reset="after")
    state = torch_ref.to_torch_state(spec, random_params(spec))
    state["rnn.bias_hh_l0"][2 * H] = 0.1  # first entry of b_hn
    with pytest.raises(ValueError, match="b_hn"):
        torch_ref.from_torch_state(spec, state)


def test_concise_model_refuses_the_books_gru() -> None:
    spec = ModelSpec("gru", V, H, gru_reset="before")
    with pytest.raises(ValueError, match="scratch"):
        torch_ref.ConciseLM(spec, random_params(spec))


def test_bias_hh_is_frozen_so_both_models_train_the_same_parameters() -> None:
    spec = ModelSpec("lstm", V, H, 2)
    model = torch_ref.ConciseLM(spec, random_params(spec))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["rnn.bias_hh_l0", "rnn.bias_hh_l1"]


# --- numpy_ref against PyTorch ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "layers", "reset"), CASES, ids=CASE_IDS)
def test_numpy_logits_grads_and_state_equal_torch(kind: str, layers: int, reset: str) -> None:
    from numpy_ref import models

    spec = ModelSpec(kind, V, H, layers, reset)
    params = random_params(spec)
    X, Y = batch()
    state = nonzero_state(spec)
    logits, _ = models.forward(spec, params, X, state)
    loss, grads, final = models.loss_and_grads(spec, params, X, Y, state)
    for model in torch_models(spec, params):
        with torch.no_grad():
            torch_logits, _ = model(torch.tensor(X), torch_state(state))
        np.testing.assert_allclose(logits, torch_logits.numpy(), rtol=RTOL, atol=ATOL)
        torch_loss, torch_grads, torch_final = torch_ref.loss_and_grads(
            model, X, Y, torch_state(state)
        )
        np.testing.assert_allclose(loss, torch_loss, rtol=RTOL, atol=ATOL)
        assert_params_close(grads, torch_grads)
        for ours, theirs in zip(final, torch_final, strict=True):
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=RTOL, atol=ATOL)


# --- rnn_jax against PyTorch -----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "layers", "reset"), JAX_CASES, ids=[IDS[c] for c in JAX_CASES])
def test_jax_logits_grads_and_state_equal_torch(x64, kind: str, layers: int, reset: str) -> None:
    import rnn_jax

    spec = ModelSpec(kind, V, H, layers, reset)
    params = random_params(spec)
    X, Y = batch()
    state = nonzero_state(spec)
    jax_params = rnn_jax.to_jax(params, "cpu")
    jax_state = tuple(x64.numpy.asarray(s) for s in state)
    logits, _ = rnn_jax.forward(spec, jax_params, X, jax_state)
    loss, grads, final = rnn_jax.loss_and_grads(spec, jax_params, X, Y, jax_state)
    assert np.asarray(logits).dtype == np.float64
    grads = x64.tree.map(np.asarray, grads)
    for model in torch_models(spec, params):
        with torch.no_grad():
            torch_logits, _ = model(torch.tensor(X), torch_state(state))
        np.testing.assert_allclose(np.asarray(logits), torch_logits.numpy(), rtol=RTOL, atol=ATOL)
        torch_loss, torch_grads, torch_final = torch_ref.loss_and_grads(
            model, X, Y, torch_state(state)
        )
        np.testing.assert_allclose(float(loss), torch_loss, rtol=RTOL, atol=ATOL)
        assert_params_close(grads, torch_grads)
        for ours, theirs in zip(final, torch_final, strict=True):
            np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=RTOL, atol=ATOL)


# --- one training step with clipping ---------------------------------------------------------


@pytest.mark.parametrize(("kind", "layers", "reset"), STEP_CASES, ids=[IDS[c] for c in STEP_CASES])
def test_one_clipped_sgd_step_gives_the_same_parameters(
    x64, kind: str, layers: int, reset: str
) -> None:
    """``train_epoch`` over one minibatch (zero state, BPTT, clip, SGD) in all three."""
    import rnn_jax
    from numpy_ref import models, optim
    from numpy_ref import training as np_train

    spec = ModelSpec(kind, V, H, layers, reset)
    params = random_params(spec)
    loader = [batch()]
    lr, theta = 0.7, 0.02
    zero = tuple(np.zeros_like(s) for s in nonzero_state(spec))
    _, grads, _ = models.loss_and_grads(spec, params, *loader[0], zero)
    assert optim.global_norm(grads) > 5 * theta  # the clipping is active, not a no-op

    ours, np_stats = np_train.train_epoch(spec, params, loader, lr, theta, False)
    theirs, jax_stats = rnn_jax.train_epoch(
        spec, rnn_jax.to_jax(params, "cpu"), loader, lr, theta, False
    )
    assert_params_close(x64.tree.map(np.asarray, theirs), ours)
    np.testing.assert_allclose(jax_stats.perplexity, np_stats.perplexity, rtol=RTOL)
    for model in torch_models(spec, params):
        model, torch_stats = torch_ref.train_epoch(model, loader, lr, theta, False)
        assert_params_close(model.to_params(), ours)
        np.testing.assert_allclose(torch_stats.perplexity, np_stats.perplexity, rtol=RTOL)


def test_clip_grad_norm_adds_an_epsilon_that_the_books_rule_does_not() -> None:
    """Why torch_ref writes the clipping out: clip_grad_norm_ divides by ||g|| + 1e-6."""
    from numpy_ref import models, optim

    spec = ModelSpec("lstm", V, H, 2)
    params = random_params(spec)
    X, Y = batch()
    zero = tuple(np.zeros((2, B, H)) for _ in range(2))
    _, grads, _ = models.loss_and_grads(spec, params, X, Y, zero)
    theta = 0.1
    norm = optim.global_norm(grads)
    assert norm > theta
    book = optim.clip_by_global_norm(grads, theta)

    model = torch_ref.ScratchLM(spec, params)
    torch_ref.loss_and_grads(model, X, Y, torch_state(zero))
    torch_ref.clip_gradients(model.parameters(), theta)
    assert_params_close(model.named_grads(), book)

    torch_ref.loss_and_grads(model, X, Y, torch_state(zero))
    torch.nn.utils.clip_grad_norm_(model.parameters(), theta)
    ratio = norm / (norm + 1e-6)  # clip_grad_norm_'s scale over the book's
    clipped = flatten_params(model.named_grads())
    for key, value in flatten_params(book).items():
        np.testing.assert_allclose(clipped[key], value * ratio, rtol=RTOL, atol=1e-15)
    assert not np.allclose(clipped["W_hq"], flatten_params(book)["W_hq"], rtol=1e-12, atol=0)
