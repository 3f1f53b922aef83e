"""The RNN, GRU and LSTM language models of d2l ch. 8-9, with backpropagation through time by hand.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, N = T*B rows of the flattened output.

Rows are examples, so a product is ``X_t W_xh``: ``(B, D) @ (D, H)``. The numbers in brackets,
(R1), (G3b'), ..., are the equations of docs/bptt.md; a primed number is the backward of that
forward equation. One forward pass, layer by layer (each layer runs all T steps before the next)::

    A_g  = W_xg[X] + b_g             layer 0: input projections by row gather          (I1)
    A_g  = H_in W_xg + b_g           layer l > 0: one product over all steps           (I2)
    H_t  = cell(A_t, H_{t-1})        per step: (R1) rnn, (G1)-(G4) gru, (L1)-(L6) lstm
    O    = H_all W_hq + b_q          output layer, one product over all steps          (O1)
    loss = mean_n -log softmax(O_n)[y_n]                                               (S1)

The backward walks the same path in reverse: the output layer hands ``dH_all`` to the top layer;
each layer walks time backwards carrying ``dh`` (and ``dc``) from step t+1 to step t (B1), sums its
recurrent weight gradients over the steps (B2), forms its input-side gradients with one product
over all steps after the loop (I2'), and hands ``dA W_xg^T`` down as the gradient of the layer
below's outputs (I3'); layer 0 scatters into ``W_xg`` with ``np.add.at`` (I1').

The state is a tuple of ``(L, B, H)`` arrays, ``(H,)`` for rnn and gru, ``(H, C)`` for lstm. The
backward stops at the initial state and returns its gradient ``dstate0``: truncated BPTT needs no
``detach`` in NumPy, a minibatch's backward never reaches an earlier minibatch.

Everything works in float32 and float64; the dtype follows the parameters (tokens are gathered
from ``W_xg``, the state is cast to the parameters' dtype).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpy_ref.spec import ModelSpec, Params, State, flatten_params

Cache = dict[str, Any]


# --- checks ----------------------------------------------------------------------------------


def check_params(spec: ModelSpec, params: Params) -> None:
    """Raise ValueError unless ``params`` has exactly the keys and shapes that ``spec`` asks for.

    The layout is that of :func:`numpy_ref.spec.init_params`: per layer ``W_xg (D, H)``,
    ``W_hg (H, H)``, ``b_g (H,)`` for every gate ``g``; then ``W_hq (H, V)`` and ``b_q (V,)``.
    Every array must have one floating dtype.
    """
    V, H = spec.vocab_size, spec.num_hiddens
    fix = "build them with init_params(spec) or load a checkpoint saved for this spec"
    if not isinstance(params, dict) or set(params) != {"layers", "W_hq", "b_q"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must be a dict with keys ['W_hq', 'b_q', 'layers'], got {found}")
    layers = params["layers"]
    if len(layers) != spec.num_layers:
        raise ValueError(
            f"params has {len(layers)} layers but {spec} asks for {spec.num_layers}; {fix}"
        )
    expected: dict[str, tuple[int, ...]] = {}
    found_shapes = {"W_hq": np.shape(params["W_hq"]), "b_q": np.shape(params["b_q"])}
    for layer_index, layer in enumerate(layers):
        D = V if layer_index == 0 else H
        keys = spec.layer_keys()
        if set(layer) != set(keys):
            raise ValueError(
                f"params['layers'][{layer_index}] has keys {sorted(layer)}, "
                f"expected {sorted(keys)} for kind {spec.kind!r}; {fix}"
            )
        for g in spec.gates:
            expected[f"layers.{layer_index}.W_x{g}"] = (D, H)
            expected[f"layers.{layer_index}.W_h{g}"] = (H, H)
            expected[f"layers.{layer_index}.b_{g}"] = (H,)
        for key, value in layer.items():
            found_shapes[f"layers.{layer_index}.{key}"] = np.shape(value)
    expected.update({"W_hq": (H, V), "b_q": (V,)})  # checked in flatten_params order
    for name, shape in expected.items():
        if found_shapes[name] != shape:
            raise ValueError(
                f"params {name!r} has shape {found_shapes[name]}, expected {shape} "
                f"for {spec}; {fix}"
            )
    dtypes = {np.asarray(v).dtype for v in flatten_params(params).values()}
    if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
        raise ValueError(
            f"params must all share one floating dtype (float32 or float64), got "
            f"{sorted(str(d) for d in dtypes)}; cast them with "
            f"map_params(lambda p: p.astype(dtype), params)"
        )


def _check_tokens(tokens: Any, vocab_size: int, name: str) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(
            f"{name} must be a (batch_size, num_steps) array with both sizes >= 1, "
            f"got shape {tokens.shape}"
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token indices, got dtype {tokens.dtype}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} holds token indices in [{low}, {high}], outside [0, {vocab_size - 1}] of a "
            f"vocabulary of {vocab_size}; index the text with the vocabulary the model was "
            f"built for"
        )
    return tokens


def _check_state(spec: ModelSpec, state: State, batch_size: int, dtype: np.dtype) -> State:
    shape = (spec.num_layers, batch_size, spec.num_hiddens)
    if not isinstance(state, (tuple, list)) or len(state) != spec.num_states:
        raise ValueError(
            f"state must be a tuple of {spec.num_states} array(s) for kind {spec.kind!r}, "
            f"got {type(state).__name__} {state!r:.80}; start from begin_state(spec, batch_size)"
        )
    arrays = tuple(np.asarray(s, dtype=dtype) for s in state)
    for s in arrays:
        if s.shape != shape:
            raise ValueError(
                f"state arrays must have shape (L, B, H) = {shape} for this spec and batch, got "
                f"{s.shape}; start from begin_state(spec, batch_size={batch_size})"
            )
    return arrays


# --- elementwise pieces ----------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``, written so that exp never overflows.

    With ``e = exp(-|x|)`` in ``(0, 1]``: ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)``
    otherwise. Its derivative is ``s (1 - s)``.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


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


# --- input and output layers -----------------------------------------------------------------


def gather_input(W_x: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Layer 0's input product by row gather (I1): ``W_x[tokens]`` equals ``onehot(tokens) @ W_x``.

    Args:
        W_x: (V, H).
        tokens: int (T, B), time-major token indices.

    Returns:
        (T, B, H): row ``W_x[tokens[t, b]]`` at ``[t, b]``.
    """
    return W_x[tokens]


def gather_input_backward(dA: np.ndarray, tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Backward of :func:`gather_input` (I1'): row ``dA[t, b]`` is added to row ``tokens[t, b]``.

    ``np.add.at`` accumulates repeated indices (a plain ``dW[tokens] += dA`` would keep only one
    of the rows that hit the same token).

    Args:
        dA: (T, B, H), gradient of the gathered rows.
        tokens: int (T, B).
        vocab_size: V, the number of rows of ``W_x``.

    Returns:
        dW_x (V, H).
    """
    dW_x = np.zeros((vocab_size, dA.shape[-1]), dtype=dA.dtype)
    np.add.at(dW_x, tokens, dA)
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


# --- RNN cell --------------------------------------------------------------------------------


def rnn_step_forward(
    x_proj: dict[str, np.ndarray], h_prev: np.ndarray, layer: Params
) -> tuple[np.ndarray, tuple]:
    """One step of the vanilla RNN (R1): ``h_next = tanh(A_h + h_prev W_hh)``.

    Args:
        x_proj: ``{"h": A_h}``, ``A_h = x W_xh + b_h`` (B, H), this step's input projection.
        h_prev: (B, H), the hidden state of the previous step.
        layer: this layer's parameters; reads ``W_hh`` (H, H).

    Returns:
        ``h_next`` (B, H) and the cache for :func:`rnn_step_backward`.
    """
    W_hh = layer["W_hh"]
    h_next = np.tanh(x_proj["h"] + h_prev @ W_hh)  # (R1)
    return h_next, (h_prev, h_next, W_hh)


def rnn_step_backward(
    dh_next: np.ndarray, cache: tuple
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`rnn_step_forward`.

    Args:
        dh_next: (B, H), gradient of the loss with respect to ``h_next`` (all paths into it).
        cache: from the forward step.

    Returns:
        ``dx_proj`` ``{"h": dA_h}`` (B, H); ``dh_prev`` (B, H); ``dW_h`` ``{"W_hh": (H, H)}``, this
        step's share of the recurrent weight gradient.
    """
    h_prev, h_next, W_hh = cache
    dA_h = dh_next * (1.0 - h_next * h_next)  # (R1') through tanh: tanh' = 1 - tanh^2
    dh_prev = dA_h @ W_hh.T  # (R1') through h_prev W_hh, w.r.t. h_prev
    dW_hh = h_prev.T @ dA_h  # (R1') through h_prev W_hh, w.r.t. W_hh
    return {"h": dA_h}, dh_prev, {"W_hh": dW_hh}


# --- GRU cell --------------------------------------------------------------------------------


def gru_step_forward(
    x_proj: dict[str, np.ndarray], h_prev: np.ndarray, layer: Params, reset: str = "before"
) -> tuple[np.ndarray, tuple]:
    """One GRU step, (G1)-(G4), with the reset gate ``"before"`` or ``"after"`` the product.

    ::

        Z       = sigmoid(A_z + h_prev W_hz)                          (G1) update gate
        R       = sigmoid(A_r + h_prev W_hr)                          (G2) reset gate
        h_tilde = tanh(A_h + (R * h_prev) W_hh)    reset="before"     (G3b) the book's scratch GRU
        h_tilde = tanh(A_h + R * (h_prev W_hh))    reset="after"      (G3a) PyTorch / cuDNN
        h_next  = Z * h_prev + (1 - Z) * h_tilde                      (G4)

    Args:
        x_proj: ``{"z": A_z, "r": A_r, "h": A_h}``, each (B, H): ``x W_xg + b_g``.
        h_prev: (B, H).
        layer: this layer's parameters; reads ``W_hz``, ``W_hr``, ``W_hh`` (H, H).
        reset: "before" or "after".

    Returns:
        ``h_next`` (B, H) and the cache for :func:`gru_step_backward`.
    """
    W_hz, W_hr, W_hh = layer["W_hz"], layer["W_hr"], layer["W_hh"]
    z = sigmoid(x_proj["z"] + h_prev @ W_hz)  # (G1)
    r = sigmoid(x_proj["r"] + h_prev @ W_hr)  # (G2)
    if reset == "before":
        rh = r * h_prev  # (B, H), the input of W_hh
        h_tilde = np.tanh(x_proj["h"] + rh @ W_hh)  # (G3b)
        recurrent = rh
    elif reset == "after":
        hW = h_prev @ W_hh  # (B, H), the output of W_hh
        h_tilde = np.tanh(x_proj["h"] + r * hW)  # (G3a)
        recurrent = hW
    else:
        raise ValueError(f"reset must be 'before' or 'after', got {reset!r}")
    h_next = z * h_prev + (1.0 - z) * h_tilde  # (G4)
    return h_next, (reset, h_prev, z, r, recurrent, h_tilde, W_hz, W_hr, W_hh)


def gru_step_backward(
    dh_next: np.ndarray, cache: tuple
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`gru_step_forward`.

    Args:
        dh_next: (B, H), gradient of the loss with respect to ``h_next`` (all paths into it).
        cache: from the forward step.

    Returns:
        ``dx_proj`` ``{"z", "r", "h"}`` each (B, H); ``dh_prev`` (B, H); ``dW_h``
        ``{"W_hz", "W_hr", "W_hh"}`` each (H, H), this step's share.
    """
    reset, h_prev, z, r, recurrent, h_tilde, W_hz, W_hr, W_hh = cache
    dz = dh_next * (h_prev - h_tilde)  # (G4') w.r.t. Z
    dh_tilde = dh_next * (1.0 - z)  # (G4') w.r.t. h_tilde
    dh_prev = dh_next * z  # (G4') w.r.t. h_prev, the direct path
    dA_h = dh_tilde * (1.0 - h_tilde * h_tilde)  # (G3') through tanh
    if reset == "before":
        rh = recurrent
        dW_hh = rh.T @ dA_h  # (G3b') through (R * h_prev) W_hh, w.r.t. W_hh
        drh = dA_h @ W_hh.T  # (G3b') ... w.r.t. its input R * h_prev
        dr = drh * h_prev  # (G3b') ... w.r.t. R
        dh_prev += drh * r  # (G3b') ... w.r.t. h_prev
    else:
        hW = recurrent
        dr = dA_h * hW  # (G3a') through R * (h_prev W_hh), w.r.t. R
        dhW = dA_h * r  # (G3a') ... w.r.t. h_prev W_hh
        dW_hh = h_prev.T @ dhW  # (G3a') ... w.r.t. W_hh
        dh_prev += dhW @ W_hh.T  # (G3a') ... w.r.t. h_prev
    dA_r = dr * r * (1.0 - r)  # (G2') through sigmoid: s' = s (1 - s)
    dA_z = dz * z * (1.0 - z)  # (G1') through sigmoid
    dh_prev += dA_r @ W_hr.T + dA_z @ W_hz.T  # (G1'), (G2') through h_prev W_hr, h_prev W_hz
    dW_hr = h_prev.T @ dA_r  # (G2') w.r.t. W_hr
    dW_hz = h_prev.T @ dA_z  # (G1') w.r.t. W_hz
    return {"z": dA_z, "r": dA_r, "h": dA_h}, dh_prev, {"W_hz": dW_hz, "W_hr": dW_hr, "W_hh": dW_hh}


# --- LSTM cell -------------------------------------------------------------------------------


def lstm_step_forward(
    x_proj: dict[str, np.ndarray], h_prev: np.ndarray, c_prev: np.ndarray, layer: Params
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One LSTM step, (L1)-(L6)::

        I       = sigmoid(A_i + h_prev W_hi)        (L1) input gate
        F       = sigmoid(A_f + h_prev W_hf)        (L2) forget gate
        O       = sigmoid(A_o + h_prev W_ho)        (L3) output gate
        c_tilde = tanh(A_c + h_prev W_hc)           (L4) candidate memory
        c_next  = F * c_prev + I * c_tilde          (L5)
        h_next  = O * tanh(c_next)                  (L6)

    Args:
        x_proj: ``{"i", "f", "o", "c"}``, each (B, H): ``x W_xg + b_g``.
        h_prev: (B, H).
        c_prev: (B, H), the memory cell.
        layer: this layer's parameters; reads ``W_hi``, ``W_hf``, ``W_ho``, ``W_hc`` (H, H).

    Returns:
        ``h_next`` (B, H), ``c_next`` (B, H) and the cache for :func:`lstm_step_backward`.
    """
    i = sigmoid(x_proj["i"] + h_prev @ layer["W_hi"])  # (L1)
    f = sigmoid(x_proj["f"] + h_prev @ layer["W_hf"])  # (L2)
    o = sigmoid(x_proj["o"] + h_prev @ layer["W_ho"])  # (L3)
    c_tilde = np.tanh(x_proj["c"] + h_prev @ layer["W_hc"])  # (L4)
    c_next = f * c_prev + i * c_tilde  # (L5)
    tanh_c = np.tanh(c_next)
    h_next = o * tanh_c  # (L6)
    return h_next, c_next, (h_prev, c_prev, i, f, o, c_tilde, tanh_c, layer)


def lstm_step_backward(
    dh_next: np.ndarray, dc_next: np.ndarray, cache: tuple
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`lstm_step_forward`.

    Args:
        dh_next: (B, H), gradient with respect to ``h_next`` (all paths into it).
        dc_next: (B, H), gradient with respect to ``c_next`` from step t+1 (zeros at the last step).
        cache: from the forward step.

    Returns:
        ``dx_proj`` ``{"i", "f", "o", "c"}`` each (B, H); ``dh_prev`` (B, H); ``dc_prev`` (B, H);
        ``dW_h`` ``{"W_hi", "W_hf", "W_ho", "W_hc"}`` each (H, H), this step's share.
    """
    h_prev, c_prev, i, f, o, c_tilde, tanh_c, layer = cache
    do = dh_next * tanh_c  # (L6') w.r.t. O
    dc = dc_next + dh_next * o * (1.0 - tanh_c * tanh_c)  # (L6') w.r.t. c_next, + path from t+1
    df = dc * c_prev  # (L5') w.r.t. F
    dc_prev = dc * f  # (L5') w.r.t. c_prev
    di = dc * c_tilde  # (L5') w.r.t. I
    dc_tilde = dc * i  # (L5') w.r.t. c_tilde
    dx_proj = {
        "i": di * i * (1.0 - i),  # (L1') through sigmoid
        "f": df * f * (1.0 - f),  # (L2') through sigmoid
        "o": do * o * (1.0 - o),  # (L3') through sigmoid
        "c": dc_tilde * (1.0 - c_tilde * c_tilde),  # (L4') through tanh
    }
    dh_prev = sum(dA @ layer[f"W_h{g}"].T for g, dA in dx_proj.items())  # (L1'-L4') h_prev W_hg
    dW_h = {f"W_h{g}": h_prev.T @ dA for g, dA in dx_proj.items()}  # (L1'-L4') w.r.t. W_hg
    return dx_proj, dh_prev, dc_prev, dW_h


# --- one layer over all steps ----------------------------------------------------------------


def layer_forward(
    spec: ModelSpec, layer: Params, A_x: dict[str, np.ndarray], state0: State
) -> tuple[np.ndarray, State, list[tuple]]:
    """Run one recurrent layer over all T steps, one step function call per step.

    Args:
        spec: the model (its kind and GRU variant).
        layer: this layer's parameters.
        A_x: ``{gate: (T, B, H)}``, the input projections ``X_t W_xg + b_g`` of every step.
        state0: ``(h0,)`` or ``(h0, c0)``, each (B, H).

    Returns:
        ``H_all`` (T, B, H) the hidden state of every step; the final state, a tuple like
        ``state0``; the T step caches.
    """
    first = A_x[spec.gates[0]]
    T = first.shape[0]
    H_all = np.empty_like(first)  # (T, B, H)
    state = tuple(state0)
    caches = []
    for t in range(T):
        x_t = {g: A[t] for g, A in A_x.items()}
        if spec.kind == "rnn":
            h, cache = rnn_step_forward(x_t, state[0], layer)
            state = (h,)
        elif spec.kind == "gru":
            h, cache = gru_step_forward(x_t, state[0], layer, spec.gru_reset)
            state = (h,)
        else:
            h, c, cache = lstm_step_forward(x_t, state[0], state[1], layer)
            state = (h, c)
        H_all[t] = h
        caches.append(cache)
    return H_all, state, caches


def layer_backward(
    spec: ModelSpec, caches: list[tuple], dH_all: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], State]:
    """Backpropagation through time for one layer: walk the T steps in reverse.

    Args:
        spec: the model.
        caches: the T step caches of :func:`layer_forward`.
        dH_all: (T, B, H), gradient of the loss with respect to each step's output ``H_t``
            through the layer above (or the output layer), not through step t+1.

    Returns:
        ``dA_x`` ``{gate: (T, B, H)}``, gradients of the input projections; ``dW_h``
        ``{"W_hg": (H, H)}``, recurrent weight gradients summed over the steps; ``dstate0``,
        the gradient with respect to the initial state, ``(dh0,)`` or ``(dh0, dc0)`` each (B, H).
    """
    T = dH_all.shape[0]
    dA_x = {g: np.empty_like(dH_all) for g in spec.gates}
    dW_h: dict[str, np.ndarray] = {}
    dh_next = np.zeros_like(dH_all[0])  # nothing flows back from beyond the last step
    dc_next = np.zeros_like(dH_all[0])
    for t in reversed(range(T)):
        dh = dH_all[t] + dh_next  # (B1) H_t feeds the layer above AND step t+1: add both paths
        if spec.kind == "rnn":
            dx, dh_next, dW = rnn_step_backward(dh, caches[t])
        elif spec.kind == "gru":
            dx, dh_next, dW = gru_step_backward(dh, caches[t])
        else:
            dx, dh_next, dc_next, dW = lstm_step_backward(dh, dc_next, caches[t])
        for g in spec.gates:
            dA_x[g][t] = dx[g]
        for key, value in dW.items():  # (B2) W_hg is shared by every step: sum the shares
            dW_h[key] = dW_h[key] + value if key in dW_h else value
    dstate0 = (dh_next, dc_next) if spec.kind == "lstm" else (dh_next,)
    return dA_x, dW_h, dstate0


# --- the whole model -------------------------------------------------------------------------


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
    dtype = np.asarray(params["b_q"]).dtype
    X = _check_tokens(X, spec.vocab_size, "X")
    state = _check_state(spec, state, X.shape[0], dtype)
    inputs = X.T  # (T, B) token indices, time-major: the input of layer 0
    layer_caches = []
    final_states: list[list[np.ndarray]] = [[] for _ in state]
    for index, layer in enumerate(params["layers"]):
        if index == 0:
            A_x = {g: gather_input(layer[f"W_x{g}"], inputs) + layer[f"b_{g}"] for g in spec.gates}
        else:
            A_x = {
                g: dense_all_steps(inputs, layer[f"W_x{g}"], layer[f"b_{g}"]) for g in spec.gates
            }
        H_all, final, caches = layer_forward(spec, layer, A_x, tuple(s[index] for s in state))
        layer_caches.append((inputs, caches))
        for collected, s in zip(final_states, final, strict=True):
            collected.append(s)
        inputs = H_all  # (T, B, H): the input of the next layer
    logits = dense_all_steps(inputs, params["W_hq"], params["b_q"])  # (O1) (T, B, V)
    new_state = tuple(np.stack(collected) for collected in final_states)  # (L, B, H) each
    return logits, new_state, {"layers": layer_caches, "H_top": inputs}


def backward(
    spec: ModelSpec, params: Params, cache: Cache, dlogits: np.ndarray
) -> tuple[Params, State]:
    """Backpropagation through time through the whole model, top layer to bottom.

    Args:
        spec: the model.
        params: the parameters of the forward pass.
        cache: from :func:`forward_with_cache`.
        dlogits: (T, B, V), gradient of the loss with respect to the logits.

    Returns:
        ``grads``, a dict with exactly the keys, shapes and key order of ``params``; ``dstate0``,
        the gradient with respect to the initial state, a tuple of (L, B, H) like the state.
        The final state is treated as unused by the loss (its gradient is zero).
    """
    dH_all, dW_hq, db_q = dense_all_steps_backward(dlogits, cache["H_top"], params["W_hq"])  # (O1')
    layer_grads: list[Params] = [{} for _ in params["layers"]]
    dstates: list[list[np.ndarray]] = [[] for _ in range(spec.num_states)]
    for index in reversed(range(spec.num_layers)):
        layer = params["layers"][index]
        inputs, caches = cache["layers"][index]
        dA_x, dW_h, dstate0 = layer_backward(spec, caches, dH_all)
        grads = dict(dW_h)
        dX_all = None
        for g in spec.gates:
            if index == 0:  # (I1') scatter-add into the gathered rows
                grads[f"W_x{g}"] = gather_input_backward(dA_x[g], inputs, spec.vocab_size)
                grads[f"b_{g}"] = dA_x[g].sum(axis=(0, 1))
            else:  # (I2') one product over all steps; (I3') the input gradient of this gate
                dX_g, grads[f"W_x{g}"], grads[f"b_{g}"] = dense_all_steps_backward(
                    dA_x[g], inputs, layer[f"W_x{g}"]
                )
                dX_all = dX_g if dX_all is None else dX_all + dX_g
        layer_grads[index] = {key: grads[key] for key in layer}
        for collected, ds in zip(dstates, dstate0, strict=True):
            collected.insert(0, ds)
        dH_all = dX_all  # (I3') layer l's input gradient is the output gradient of layer l-1
    dstate = tuple(np.stack(collected) for collected in dstates)  # (L, B, H) each
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


def _flat_targets(Y: np.ndarray, X: np.ndarray, vocab_size: int) -> np.ndarray:
    Y = _check_tokens(Y, vocab_size, "Y")
    if Y.shape != np.shape(X):
        raise ValueError(f"Y must have the shape of X, {np.shape(X)}, got {Y.shape}")
    return Y.T.reshape(-1)  # (N,), entry t*B + b is Y[b, t]: the time-major order of the logits


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
    targets = _flat_targets(Y, X, spec.vocab_size)
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
    targets = _flat_targets(Y, X, spec.vocab_size)
    logits, state, cache = forward_with_cache(spec, params, X, state)
    T, B, V = logits.shape
    loss, dlogits = softmax_cross_entropy(logits.reshape(T * B, V), targets)  # (S1), (S1')
    grads, _ = backward(spec, params, cache, dlogits.reshape(T, B, V))
    return loss, grads, state
