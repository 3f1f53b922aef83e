"""The language models of d2l ch. 8-9 with backpropagation through time by hand: the layers and the
whole model, over the cells of :mod:`numpy_ref.cells`.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, G gates of the cell, N = T*B rows of the flattened output.

Rows are examples, so a product is ``X_t W_xh``: ``(B, D) @ (D, H)``. The numbers in brackets,
(R1), (G3b'), ..., are the equations of docs/bptt.md; a primed number is the backward of that
forward equation. One forward pass, layer by layer (each layer runs all T steps before the next)::

    A    = W_x[X] + b               layer 0: input projections by row gather           (I1)
    A    = H_in W_x + b             layer l > 0: one product over all steps            (I2)
    H_t  = cell(A_t, H_{t-1})       per step: (R1) rnn, (G1)-(G4) gru, (L1)-(L6) lstm
    O    = H_all W_hq + b_q         output layer, one product over all steps           (O1)
    loss = mean_n -log softmax(O_n)[y_n]                                               (S1)

where a layer's per-gate weights are taken side by side (``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b``
(G*H,), gates in the cell's order) once per minibatch, so that each step costs one product for all
gates; their gradients are split back into the per-gate dict once, at the end.

The backward walks the same path in reverse: the output layer hands ``dH_all`` to the top layer;
each layer walks time backwards, adding to what comes from above the gradient that step t+1
passes back (B1), summing the steps' shares of ``dW_h`` (B2); after the loop it forms its
input-side gradients with one product over all steps (I2') and hands ``dA W_x^T`` down as the
gradient of the layer below's outputs (I3'); layer 0 scatters into ``W_x`` (I1').

The backward stops at the initial state and returns its gradient ``dstate0``: truncated BPTT needs
no ``detach`` in NumPy, a minibatch's backward never reaches an earlier minibatch.

Everything works in float32 and float64; the dtype follows the parameters (tokens are gathered
from ``W_x``, the state is cast to the parameters' dtype).
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


# --- loss, input and output layers -------------------------------------------------------------


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


def gather_input(W_x: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Layer 0's input product by row gather (I1): ``W_x[tokens]`` equals ``onehot(tokens) @ W_x``.

    Args:
        W_x: (V, K).
        tokens: int (T, B), time-major token indices.

    Returns:
        (T, B, K): row ``W_x[tokens[t, b]]`` at ``[t, b]``.
    """
    return W_x[tokens]


def gather_input_backward(dA: np.ndarray, tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Backward of :func:`gather_input` (I1'): row ``dA[t, b]`` is added to row ``tokens[t, b]``.

    That is ``onehot(tokens)^T dA``, the transpose of the book's one-hot product, computed over
    the S tokens that occur in the minibatch only: one (S, N) @ (N, K) product. (A plain
    ``dW[tokens] += dA`` would keep only one of the rows that hit the same token.)

    Args:
        dA: (T, B, K), gradient of the gathered rows.
        tokens: int (T, B).
        vocab_size: V, the number of rows of ``W_x``.

    Returns:
        dW_x (V, K).
    """
    rows = dA.reshape(-1, dA.shape[-1])  # (N, K)
    present, which = np.unique(tokens.reshape(-1), return_inverse=True)  # (S,), (N,)
    onehot_T = np.zeros((present.size, rows.shape[0]), dtype=dA.dtype)  # (S, N)
    onehot_T[which, np.arange(rows.shape[0])] = 1.0
    dW_x = np.zeros((vocab_size, rows.shape[1]), dtype=dA.dtype)
    dW_x[present] = onehot_T @ rows
    return dW_x


def dense_all_steps(X_all: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X_all W + b`` for every step at once: one ``(T*B, D) @ (D, K)`` product ((I2), (O1)).

    Args:
        X_all: (T, B, D).
        W: (D, K).
        b: (K,).

    Returns:
        (T, B, K).
    """
    T, B, D = X_all.shape  # steps, batch, input features
    return (X_all.reshape(T * B, D) @ W + b).reshape(T, B, W.shape[1])


def dense_all_steps_backward(
    dY_all: np.ndarray, X_all: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`dense_all_steps` ((I2'), (I3'), (O1')): one product per gradient.

    Args:
        dY_all: (T, B, K), gradient of the output.
        X_all: (T, B, D), the input of the forward.
        W: (D, K).

    Returns:
        ``dX_all`` (T, B, D) = ``dY W^T``; ``dW`` (D, K) = ``X_all^T dY`` summed over every step
        and example; ``db`` (K,) = ``dY`` summed over steps and examples.
    """
    T, B, D = X_all.shape  # steps, batch, input features
    K = W.shape[1]
    dY = dY_all.reshape(T * B, K)  # (N, K), row t*B + b
    dW = X_all.reshape(T * B, D).T @ dY
    db = dY.sum(axis=0)
    dX_all = (dY @ W.T).reshape(T, B, D)
    return dX_all, dW, db


# --- one layer: gates side by side, the loop over time -------------------------------------------


def stack_layer(cell: Cell, layer: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer's per-gate weights side by side, in the cell's gate order.

    Returns:
        ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H,).
    """

    def stack(prefix: str) -> np.ndarray:
        return np.concatenate([layer[f"{prefix}{g}"] for g in cell.gates], axis=-1)

    return stack("W_x"), stack("W_h"), stack("b_")


def unstack_layer(cell: Cell, dW_x: np.ndarray, dW_h: np.ndarray, db: np.ndarray) -> Params:
    """Inverse of :func:`stack_layer` for the gradients: the per-gate dict, in parameter order."""
    G = len(cell.gates)
    parts = {"W_x": np.split(dW_x, G, axis=-1), "W_h": np.split(dW_h, G, axis=-1),
             "b_": np.split(db, G, axis=-1)}  # fmt: skip
    return {
        f"{prefix}{g}": np.ascontiguousarray(parts[prefix][i])
        for i, g in enumerate(cell.gates)
        for prefix in ("W_x", "W_h", "b_")
    }


def layer_forward(
    cell: Cell, W_h: np.ndarray, A_x: np.ndarray, state0: State
) -> tuple[np.ndarray, State, list[Any]]:
    """Run one recurrent layer over all T steps, one step function call per step.

    Args:
        cell: the layer's cell.
        W_h: (H, G*H), the stacked recurrent weights.
        A_x: (T, B, G*H), the input part of every gate at every step, ``X_t W_x + b``.
        state0: the initial state, a tuple of (B, H) arrays.

    Returns:
        ``H_all`` (T, B, H), the hidden state of every step; the final state, a tuple like
        ``state0``; the T step caches.
    """
    T, B = A_x.shape[:2]
    H_all = np.empty((T, B, W_h.shape[0]), dtype=A_x.dtype)
    state = tuple(state0)
    caches = []
    for t in range(T):
        state, cache = cell.step_forward(W_h, state, A_x[t])
        H_all[t] = state[0]
        caches.append(cache)
    return H_all, state, caches


def layer_backward(
    cell: Cell, W_h: np.ndarray, caches: list[Any], dH_above: np.ndarray
) -> tuple[np.ndarray, np.ndarray, State, np.ndarray]:
    """Backpropagation through time for one layer: walk the T steps in reverse.

    Args:
        cell: the layer's cell.
        W_h: (H, G*H), the stacked recurrent weights of the forward.
        caches: the T step caches of :func:`layer_forward`.
        dH_above: (T, B, H), gradient of the loss with respect to each step's output ``H_t``
            through the layer above (or the output layer), not through step t+1.

    Returns:
        ``dA_x`` (T, B, G*H), gradients of the input projections; ``dW_h`` (H, G*H), the
        recurrent weights' gradient summed over the steps; ``dstate0``, the gradient with
        respect to the initial state, a tuple of (B, H); ``dH`` (T, B, H), the total gradient
        with respect to every ``H_t`` (above and through time: what ``dh_next`` was at step t).
    """
    T, B, H = dH_above.shape
    dA_x = np.empty((T, B, W_h.shape[1]), dtype=dH_above.dtype)
    dH = np.empty_like(dH_above)
    dW_h = np.zeros_like(W_h)
    dstate = tuple(np.zeros((B, H), dH_above.dtype) for _ in cell.states)  # none beyond step T
    for t in reversed(range(T)):
        dH[t] = dH_above[t] + dstate[0]  # (B1) H_t feeds the layer above AND step t+1: add both
        dA_x[t], dstate, dW_share = cell.step_backward(W_h, (dH[t], *dstate[1:]), caches[t])
        dW_h += dW_share  # (B2) W_h is shared by every step: sum the shares
    return dA_x, dW_h, dstate, dH


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
        cache.
    """
    check_params(spec, params)
    X = check_tokens(X, spec.vocab_size, "X")
    state = check_state(spec, state, X.shape[0], param_dtype(params))
    cell = spec.cell
    inputs = X.T  # (T, B) token indices, time-major: the input of layer 0
    layer_caches = []
    for index, layer in enumerate(params["layers"]):
        W_x, W_h, b = stack_layer(cell, layer)
        if index == 0:
            A_x = gather_input(W_x, inputs) + b  # (I1) (T, B, G*H)
        else:
            A_x = dense_all_steps(inputs, W_x, b)  # (I2) (T, B, G*H)
        H_all, final, caches = layer_forward(cell, W_h, A_x, tuple(s[index] for s in state))
        layer_caches.append({"inputs": inputs, "W_x": W_x, "W_h": W_h, "steps": caches,
                             "final": final})  # fmt: skip
        inputs = H_all  # (T, B, H): the input of the next layer
    logits = dense_all_steps(inputs, params["W_hq"], params["b_q"])  # (O1) (T, B, V)
    new_state = tuple(
        np.stack([c["final"][k] for c in layer_caches]) for k in range(spec.num_states)
    )  # (L, B, H) each
    return logits, new_state, {"layers": layer_caches, "H_top": inputs}


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
    dH_all, dW_hq, db_q = dense_all_steps_backward(dlogits, cache["H_top"], params["W_hq"])  # (O1')
    layer_grads: list[Params] = [{} for _ in params["layers"]]
    dstates: list[State] = [() for _ in params["layers"]]
    for index in reversed(range(spec.num_layers)):
        c = cache["layers"][index]
        dA_x, dW_h, dstates[index], _ = layer_backward(cell, c["W_h"], c["steps"], dH_all)
        if index == 0:  # (I1') scatter-add into the gathered rows
            dW_x = gather_input_backward(dA_x, c["inputs"], spec.vocab_size)
            db = dA_x.sum(axis=(0, 1))
        else:  # (I2') one product over all steps; (I3') the gradient of the layer below
            dH_all, dW_x, db = dense_all_steps_backward(dA_x, c["inputs"], c["W_x"])
        grads = unstack_layer(cell, dW_x, dW_h, db)
        layer_grads[index] = {key: grads[key] for key in params["layers"][index]}
    dstate = tuple(np.stack([d[k] for d in dstates]) for k in range(spec.num_states))
    return {"layers": layer_grads, "W_hq": dW_hq, "b_q": db_q}, dstate


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
