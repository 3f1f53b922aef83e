"""The layers around the recurrence, in columns, each twice: plain (differentiated by JAX, for
``grad_mode="autodiff"``) and with its backward written by hand (``"bptt"``).

Letters as in :mod:`rnn_jax.models`: a sequence is kept as columns (K, T, B), column ``t*B + b``
of its (K, N) view being the book's row ``t*B + b``; tokens are (T, B), the transpose of ``X``.

- the input layer (I1): ``A_x = onehot(X) W_x + b``, a row of ``W_x + b`` per token;
- a dense layer (I2, O1): ``Y = X W + b``, the layers above the first and the output;
- the loss (O2): the mean over the N positions of ``-log softmax(logits)[Y]``.

The hand-written forms are what XLA's CPU backend runs fastest and compiles into the fewest
kernels (docs/performance.md): every product is ``W^T`` written out times a (D, N) matrix, in
YNNPACK, and the loss's gradient is the one elementwise expression ``(softmax - onehot) / N``
instead of JAX's scatter into a zero array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax.xla_tricks import transposed

Array = jax.Array


def gather_columns_plain(W_x: Array, b: Array, tokens: Array) -> Array:
    """``(W_x + b)[tokens]`` as columns: W_x (V, K), b (K,), tokens int (T, B) -> (K, T, B); the
    same as the book's one-hot product ``onehot(tokens) W_x + b``."""
    return jnp.moveaxis((W_x + b)[tokens], -1, 0)


def _product(X: Array, W: Array) -> Array:
    """``W^T X``: X (D, T, B) -> (K, T, B), with ``W^T`` written out first (a product whose left
    operand is a transpose is the slow one, ``rnn_jax.xla_tricks.materialized``)."""
    D, *rest = X.shape
    return (transposed(W) @ X.reshape(D, -1)).reshape(-1, *rest)


def _gather_columns_fwd(W_x: Array, b: Array, tokens: Array) -> tuple[Array, tuple[Array]]:
    onehot = jax.nn.one_hot(tokens, W_x.shape[0], dtype=W_x.dtype, axis=0)  # (V, T, B)
    return _product(onehot, W_x + b), (onehot,)


@jax.custom_vjp
def gather_columns(W_x: Array, b: Array, tokens: Array) -> Array:
    """:func:`gather_columns_plain` as the book's one-hot product ``(W_x + b)^T onehot``
    (every column of ``onehot`` sums to 1, so the bias rides along exactly): on the CPU, XLA
    fuses the stacking of the gates' arrays into a gather and runs it element by element. The
    backward (I1') adds each column's gradient into the row of its token (the one-hot product
    again), and sums them for ``b``."""
    return _gather_columns_fwd(W_x, b, tokens)[0]


def _gather_columns_bwd(residuals: tuple[Array], dA: Array) -> tuple[Array, Array, None]:
    (onehot,) = residuals
    columns = dA.reshape(dA.shape[0], -1)  # (K, N)
    return onehot.reshape(onehot.shape[0], -1) @ columns.T, columns.sum(axis=1), None


gather_columns.defvjp(_gather_columns_fwd, _gather_columns_bwd)


def dense_plain(X: Array, W: Array, b: Array) -> Array:
    """``W^T X + b``: X (D, T, B), W (D, K), b (K,) -> (K, T, B), the columns of ``X W + b``."""
    return jnp.einsum("dk,dtb->ktb", W, X) + b[:, None, None]


@jax.custom_vjp
def dense(X: Array, W: Array, b: Array) -> Array:
    """:func:`dense_plain` as one product (:func:`_product`), with the backward (I2', O1') as two
    products that XLA's CPU backend runs in YNNPACK: ``dX = W dY`` and ``dW = X dY^T``."""
    return _product(X, W) + b[:, None, None]


def _dense_fwd(X: Array, W: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    return dense(X, W, b), (X, W)


def _dense_bwd(residuals: tuple[Array, Array], dY: Array) -> tuple[Array, Array, Array]:
    X, W = residuals
    X_cols, dY_cols = X.reshape(X.shape[0], -1), dY.reshape(dY.shape[0], -1)
    return (W @ dY_cols).reshape(X.shape), X_cols @ dY_cols.T, dY_cols.sum(axis=1)


dense.defvjp(_dense_fwd, _dense_bwd)


def cross_entropy_plain(logits: Array, tokens: Array) -> Array:
    """(O2) mean of ``-log softmax(logits)[y]``: logits (V, T, B), tokens int (T, B)."""
    log_probs = jax.nn.log_softmax(logits, axis=0)
    return -jnp.mean(jnp.take_along_axis(log_probs, tokens[None], axis=0))


def _log_partition(logits: Array) -> Array:
    """``log sum_v exp(logits[v])`` (T, B), the largest logit taken out first."""
    top = logits.max(axis=0)
    return top + jnp.log(jnp.exp(logits - top).sum(axis=0))


def _onehot(tokens: Array, V: int, dtype: jnp.dtype) -> Array:
    return jax.nn.one_hot(tokens, V, dtype=dtype, axis=0)  # (V, T, B)


def _cross_entropy_fwd(logits: Array, tokens: Array) -> tuple[Array, tuple[Array, Array, Array]]:
    log_z = _log_partition(logits)  # (T, B)
    onehot = _onehot(tokens, logits.shape[0], logits.dtype)
    loss = ((log_z - logits) * onehot).sum() / log_z.size  # one sum: the fewest kernels
    return loss, (logits, log_z, tokens)


@jax.custom_vjp
def cross_entropy(logits: Array, tokens: Array) -> Array:
    """:func:`cross_entropy_plain` as ``mean(log Z - logits[y])``, ``Z`` the softmax's
    normaliser; the backward (O2') is ``dlogits = (exp(logits - log Z) - onehot(y)) g / N``, one
    elementwise pass."""
    return _cross_entropy_fwd(logits, tokens)[0]


def _cross_entropy_bwd(residuals: tuple[Array, Array, Array], g: Array) -> tuple[Array, None]:
    logits, log_z, tokens = residuals
    onehot = _onehot(tokens, logits.shape[0], logits.dtype)
    return (jnp.exp(logits - log_z) - onehot) * (g / log_z.size), None


cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)
