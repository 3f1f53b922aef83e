"""The language models of d2l ch. 8-9 with backpropagation through time by hand: one layer over
time and the whole model, over the cells of :mod:`numpy_ref.cells`.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, N = T*B rows of the flattened output.

Rows are examples, so a product is ``X_t W_xh``: ``(B, D) @ (D, H)``. The numbers in brackets,
(R1), (G3b'), ..., are the equations of docs/bptt.md; a primed number is the backward of that
forward equation. One forward pass, layer by layer (each layer runs all T steps before the next)::

    X_t  = onehot(tokens_t)         layer 0's input at step t, (B, V)                  (I1)
    X_t  = H_t of the layer below   layer l > 0's input                                (I2)
    H_t  = cell(X_t, H_{t-1})       per step: (R1) rnn, (G1)-(G4) gru, (L1)-(L6) lstm
    O_t  = H_t W_hq + b_q           the output layer, on the top layer's H_t           (O1)
    loss = mean_n -log softmax(O_n)[y_n]                                               (S1)

The backward walks the same path in reverse. Three functions compute the gradient of a recurrent
weight such as ``W_hh``, from ``dlogits`` (the loss's gradient, :func:`softmax_cross_entropy`,
(S1')) to the dict that :func:`loss_and_grads` returns:

1. :func:`backward`, the whole model: the output layer hands ``dH_above``, the gradient of every
   ``H_t`` of the top layer, to that layer (O1'); each layer hands the gradient of its inputs to
   the layer below (I3');
2. :func:`layer_backward`, one layer: it walks time backwards, adding to what comes from above
   the gradient that step t+1 passes back (B1), and sums the steps' shares of every parameter's
   gradient (B2);
3. the cell's step backward, e.g. :func:`numpy_ref.cells.rnn_step_backward`: one step's share,
   ``dW_hh = h_prev^T da_h`` (R1').

The backward stops at the initial state and returns its gradient ``dstate0``: truncated BPTT needs
no ``detach`` in NumPy, a minibatch's backward never reaches an earlier minibatch.

Everything works in float32 and float64; the dtype follows the parameters (the one-hot inputs
and the state are cast to it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpy_ref.cells import Cell
from numpy_ref.spec import (
    ModelSpec,
    Params,
    State,
    check_params,
    check_state,
    check_tokens,
    param_dtype,
)

Cache = dict[str, Any]


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer targets, and its gradient.

    Equations (S1) and (S1') of docs/bptt.md. The log-softmax subtracts the row maximum first, so
    ``exp`` never overflows whatever the size of the logits.

    Args:
        logits: (N, V).
        targets: int (N,), values in [0, V).

    Returns:
        ``loss`` (a float, the mean over the N rows) and ``dlogits`` (N, V), the gradient of the
        loss with respect to ``logits``: ``(softmax(logits) - onehot(targets)) / N``.
    """
    N = logits.shape[0]
    rows = np.arange(N)
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, V), each row's max is 0
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, V)
    loss = -log_probs[rows, targets].mean()  # (S1)
    dlogits = np.exp(log_probs)  # (S1') softmax(O) ...
    dlogits[rows, targets] -= 1.0  # ... - onehot(y) ...
    dlogits /= N  # ... / N, from the mean
    return float(loss), dlogits


# --- one layer over time -------------------------------------------------------------------------


def layer_forward(
    cell: Cell, layer: Params, X_all: np.ndarray, state0: State
) -> tuple[np.ndarray, State, list[Any]]:
    """Run one recurrent layer over all T steps, one step function call per step.

    Args:
        cell: the layer's cell.
        layer: the layer's parameter dict (``W_xh``, ``W_hh``, ``b_h``, ...).
        X_all: (T, B, D), the layer's input at every step.
        state0: the initial state, a tuple of (B, H) arrays.

    Returns:
        ``H_all`` (T, B, H), the hidden state of every step; the final state, a tuple like
        ``state0``; the T step caches.
    """
    state = tuple(state0)
    H_all, caches = [], []
    for x in X_all:  # x (B, D): step t's input
        state, cache = cell.step_forward(x, state, layer)
        H_all.append(state[0])
        caches.append(cache)
    return np.stack(H_all), state, caches


def layer_backward(
    cell: Cell, layer: Params, caches: list[Any], dH_above: np.ndarray
) -> tuple[np.ndarray, Params, State, np.ndarray]:
    """Backpropagation through time for one layer: walk the T steps in reverse.

    Args:
        cell: the layer's cell.
        layer: the layer's parameter dict, as in the forward.
        caches: the T step caches of :func:`layer_forward`.
        dH_above: (T, B, H), gradient of the loss with respect to each step's output ``H_t``
            through the layer above (or the output layer), not through step t+1.

    Returns:
        ``dX_all`` (T, B, D), the gradient of the layer's input at every step; ``dlayer``, every
        parameter's gradient summed over the steps, a dict with the keys of ``layer``;
        ``dstate0``, the gradient with respect to the initial state, a tuple of (B, H);
        ``dH`` (T, B, H), the total gradient with respect to every ``H_t`` (above and through
        time: what ``dh_next`` was at step t).
    """
    T, B, H = dH_above.shape
    dlayer = {key: np.zeros_like(value) for key, value in layer.items()}
    dstate = tuple(np.zeros((B, H), dH_above.dtype) for _ in cell.states)  # none beyond step T
    dX_all = [None] * T
    dH = np.empty_like(dH_above)
    for t in reversed(range(T)):
        dH[t] = dH_above[t] + dstate[0]  # (B1) H_t feeds the layer above AND step t+1: add both
        dX_all[t], dstate, dstep = cell.step_backward((dH[t], *dstate[1:]), caches[t], layer)
        for key in dlayer:  # (B2) the parameters are shared by every step: sum the shares
            dlayer[key] += dstep[key]
    return np.stack(dX_all), dlayer, dstate, dH


# --- the whole model -----------------------------------------------------------------------------


def forward_with_cache(
    spec: ModelSpec, params: Params, X: np.ndarray, state: State
) -> tuple[np.ndarray, State, Cache]:
    """The forward pass, keeping what :func:`backward` needs.

    Args:
        spec: the model.
        params: the parameter dict of :mod:`numpy_ref.spec`.
        X: int (B, T), token indices.
        state: tuple of (L, B, H), e.g. ``begin_state(spec, B, dtype)``.

    Returns:
        ``logits`` (T, B, V), time-major; the final state, a tuple of new (L, B, H) arrays; the
        cache: ``steps``, every layer's step caches, and ``H_top`` (T, B, H), the top layer's
        hidden states.
    """
    check_params(spec, params)
    X = check_tokens(X, spec.vocab_size, "X")
    dtype = param_dtype(params)
    state = check_state(spec, state, X.shape[0], dtype)
    # (I1) the book's one-hot rows, time-major: row X[b, t] of the identity at [t, b]
    inputs = np.eye(spec.vocab_size, dtype=dtype)[X.T]  # (T, B, V)
    steps, finals = [], []
    for index, layer in enumerate(params["layers"]):
        H_all, final, caches = layer_forward(
            spec.cell, layer, inputs, tuple(s[index] for s in state)
        )
        steps.append(caches)
        finals.append(final)
        inputs = H_all  # (I2) (T, B, H): the input of the next layer
    logits = inputs @ params["W_hq"] + params["b_q"]  # (O1) (T, B, H) @ (H, V) -> (T, B, V)
    new_state = tuple(np.stack([f[k] for f in finals]) for k in range(spec.num_states))
    return logits, new_state, {"steps": steps, "H_top": inputs}


def backward(
    spec: ModelSpec, params: Params, cache: Cache, dlogits: np.ndarray, cell: Cell | None = None
) -> tuple[Params, State]:
    """Backpropagation through time through the whole model, top layer to bottom.

    Args:
        spec: the model.
        params: the parameters of the forward pass.
        cache: from :func:`forward_with_cache`.
        dlogits: (T, B, V), gradient of the loss with respect to the logits.
        cell: whose ``step_backward`` runs; None (the default) is ``spec.cell``. Only a variant
            of that cell fits (same name: the caches are its forward's), e.g. the one
            ``python -m experiments.gradcheck --plant`` builds with a term left out on purpose.

    Returns:
        ``grads``, a dict with exactly the keys, shapes and key order of ``params``; ``dstate0``,
        the gradient with respect to the initial state, a tuple of (L, B, H) like the state.
        The final state is treated as unused by the loss (its gradient is zero).
    """
    if cell is None:
        cell = spec.cell
    elif cell.name != spec.cell.name:
        raise ValueError(f"cell {cell.name!r} does not fit a model of cell {spec.cell.name!r}")
    H_top = cache["H_top"]  # (T, B, H)
    T, B, H = H_top.shape
    V = dlogits.shape[-1]
    # (O1') O_t = H_t W_hq + b_q at every step: W_hq and b_q get the sum over the N = T*B rows
    dW_hq = H_top.reshape(T * B, H).T @ dlogits.reshape(T * B, V)  # (H, N) @ (N, V)
    db_q = dlogits.sum(axis=(0, 1))  # (V,)
    dH_above = dlogits @ params["W_hq"].T  # (T, B, V) @ (V, H): what reaches the top H_t
    dlayers: list[Params] = [{} for _ in params["layers"]]
    dstates: list[State] = [() for _ in params["layers"]]
    for index in reversed(range(spec.num_layers)):
        layer, caches = params["layers"][index], cache["steps"][index]
        dX_all, dlayers[index], dstates[index], _ = layer_backward(cell, layer, caches, dH_above)
        dH_above = dX_all  # (I3') this layer's inputs are the layer below's outputs H_t
    # layer 0's dX_all, the gradient of the one-hot inputs, is not needed (I1')
    dstate = tuple(np.stack([d[k] for d in dstates]) for k in range(spec.num_states))
    return {"layers": dlayers, "W_hq": dW_hq, "b_q": db_q}, dstate


def forward(
    spec: ModelSpec, params: Params, X: np.ndarray, state: State
) -> tuple[np.ndarray, State]:
    """The model's logits for every step.

    Args:
        spec: the model.
        params: the parameter dict.
        X: int (B, T), token indices.
        state: tuple of (L, B, H).

    Returns:
        ``logits`` (T, B, V), time-major (row ``t*B + b`` of ``logits.reshape(-1, V)`` is step t
        of example b); the final state, a tuple of new (L, B, H) arrays.
    """
    logits, state, _ = forward_with_cache(spec, params, X, state)
    return logits, state


def flat_targets(Y: np.ndarray, X: np.ndarray, vocab_size: int) -> np.ndarray:
    """``Y`` (B, T) as the (N,) targets of the time-major logits: entry ``t*B + b`` is Y[b, t]."""
    Y = check_tokens(Y, vocab_size, "Y")
    if Y.shape != np.shape(X):
        raise ValueError(f"Y must have the shape of X, {np.shape(X)}, got {Y.shape}")
    return Y.T.reshape(-1)


def forward_loss(
    spec: ModelSpec, params: Params, X: np.ndarray, Y: np.ndarray, state: State
) -> tuple[float, State]:
    """Mean cross-entropy over the ``B*T`` targets, without gradients (for evaluation).

    Args:
        X, Y: int (B, T); ``Y[b, t]`` is the target of step t of example b.
        state: tuple of (L, B, H).

    Returns:
        ``loss`` (float) and the final state.
    """
    targets = flat_targets(Y, X, spec.vocab_size)
    logits, state = forward(spec, params, X, state)
    T, B, V = logits.shape
    loss, _ = softmax_cross_entropy(logits.reshape(T * B, V), targets)
    return loss, state


def loss_and_grads(
    spec: ModelSpec, params: Params, X: np.ndarray, Y: np.ndarray, state: State
) -> tuple[float, Params, State]:
    """Mean cross-entropy over the ``B*T`` targets and its gradient by BPTT.

    Args:
        spec: the model.
        params: the parameter dict.
        X: int (B, T), inputs.
        Y: int (B, T), targets: ``Y[b, t]`` pairs with row ``t*B + b`` of the flattened logits.
        state: tuple of (L, B, H), the initial state (treated as a constant: its gradient is
            what truncated BPTT drops; :func:`backward` returns it).

    Returns:
        ``loss`` (float); ``grads`` with exactly the keys and shapes of ``params``; the final
        state, a tuple of new (L, B, H) arrays.
    """
    targets = flat_targets(Y, X, spec.vocab_size)
    logits, state, cache = forward_with_cache(spec, params, X, state)
    T, B, V = logits.shape
    loss, dlogits = softmax_cross_entropy(logits.reshape(T * B, V), targets)  # (S1), (S1')
    grads, _ = backward(spec, params, cache, dlogits.reshape(T, B, V))
    return loss, grads, state
