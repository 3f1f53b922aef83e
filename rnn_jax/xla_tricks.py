"""What the fast path does only because XLA's CPU backend runs it faster: each trick, what it buys.

Letters: B batch, T steps, K features of a sequence (G*H gates, H hidden, V vocabulary), N = T*B.

Nothing here changes a result: every function computes what its plain form computes (the
float64 tests of ``tests/test_reference.py`` pair them). The figures are those recorded in
docs/performance.md ("What was tried", "Where the time goes") and in the commit messages named;
each says the command, the date and the machine's state as recorded there. "a -> b" is
jax-bptt's speed relative to PyTorch's, by median step, before and after the change, one thread.

In this module:

- :func:`materialized`, :func:`transposed` -- **a transpose written out before the product that
  reads it** (``lax.optimization_barrier``). XLA's CPU backend runs a product whose left operand
  is a transpose in a generic path instead of YNNPACK. (B2) of the LSTM, (256, 1120) x (1120,
  1024), one thread: 20 ms as ``a.T @ b``, 11 ms with the transpose written out (commit 7478a95,
  2026-11-29 09:38, an interleaved micro-benchmark); 44 against 74 GFLOP/s (``python -m
  experiments.bench_probes products``, 2026-11-29 15:00, idle). With it in (B2), the second
  layer's input product and the output layer's backward: lstm 0.75x -> 0.96x, deep-lstm 0.55x
  -> 0.67x (7478a95, side by side with the code before, load ~4.5; performance.md, kept 2).
- :func:`scan_columns` -- **sequences scanned as columns, in place**: a ``fori_loop`` that reads
  and writes a step's columns of a (K, T, B) array (a dynamic slice, a dynamic update) instead of
  ``lax.scan`` over (T, K, B), so no sequence is transposed for a scan and back (2-4 transposes a
  layer, each a kernel to compile and ~0.3-1.6 ms a step). Bought compile time: the cold first
  step, together with the packed parameters and the hand-written loss (commit d7f4a5d,
  ``bench_steps.compile_times`` through a throwaway script, 2026-11-29, idle, one thread):
  rnn-scratch 0.97 -> 0.66-0.86 s, gru 1.19 -> 0.79-0.95, lstm 1.28 -> 0.80-0.93, deep-lstm 1.77
  -> 1.00-1.16; steps the same within noise (``bench_probes versus --rev 2dd6aa6``). Not
  measured alone.
- ``scan_columns(..., writable=k)`` -- **outputs written over the inputs a step has read**: each
  output goes over a same-shaped input of ``xs[k:]`` instead of a new array of zeros, which XLA
  filled and copied every step (2.5 + 0.5 ms of a 29 ms LSTM step, ``bench_probes profile``).
  ``python -m tools.bench_probes versus --rev 2dd6aa6`` (2026-11-29, about 16:20, idle, one
  thread; commit 0bbc278, whose message says 16:40), jax-bptt median ms before -> after:
  rnn-scratch 24.81 -> 23.10, rnn 7.50 -> 6.88, gru 21.52 -> 21.02, lstm 27.56 -> 27.07,
  deep-lstm 74.92 -> 73.09 (performance.md, kept 11). Where the step reads the overwritten
  columns again (the GRUs' ``dh``), XLA copies the whole buffer every step instead: gru 22.6 ->
  24.4 ms (0bbc278), so which cells may is a flag of the cell table,
  ``rnn_jax.cells.Cell.da_over_factor``, read by ``rnn_jax.models``' reverse scan.

Tricks that are the shape of the code rather than a helper stay where they act; for the one
list:

- **features-major** (``rnn_jax.cells``, ``rnn_jax.models``): every state (H, B) and sequence
  (K, T, B), so the scans' products are ``W_h^T h``. The deep LSTM's scan products 10.4 and 8.9
  -> 6.5 ms a step each (a ``jax.profiler`` trace, 2026-11-29 14:20 and 14:35); ``bench_probes
  versus --rev e44c655`` (14:27, idle): lstm 0.97x -> 1.03x, deep-lstm 0.90x -> 0.99x,
  rnn-scratch 1.11x -> 1.24x (performance.md, kept 6; commit 98024bd).
- **every step's derivative factors at once** (``rnn_jax.cell_grads``): gru 27.5 vs 29.5 ms,
  deep-lstm 129 vs 150 ms, lstm and rnn within noise (performance.md, kept 1).
- **the layers' backward by hand and layer 0 as a one-hot product** (``rnn_jax.layers``): lstm
  0.73x -> 0.94x, deep-lstm 0.59x -> 0.71x (performance.md, kept 3, overlapping kept 2); the loss
  and its gradient in 4 generated kernels instead of 12 (kept 12, a throwaway script).
- **packed parameters** (``rnn_jax.training.pack``): the LSTM's step compiled in 0.75 s instead of
  1.0, the deep LSTM's in 0.87 instead of 1.18 (throwaway script, 2026-11-29 15:58, cache off);
  steps unchanged (performance.md, kept 9).
- **the process's settings** (``experiments.runtime``: glibc's malloc, LLVM level 2, threads):
  performance.md, kept 7 and 8, and its Threads section.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def materialized(a: Array) -> Array:
    """``a`` written out as an array of its own (``lax.optimization_barrier``), so that XLA does
    not fold a transpose into the product that reads it: XLA's CPU backend runs a product whose
    left operand is transposed in a generic path instead of YNNPACK, for (B2), (H, N) x (N, G*H),
    at half the rate (``python -m tools.bench_probes products``, docs/performance.md)."""
    return lax.optimization_barrier(a)


def transposed(W: Array) -> Array:
    """``W^T`` written out (:func:`materialized`): a product whose left operand is a transpose
    is the slow one (above)."""
    return materialized(W.T)


def _at(a: Array, t: Array) -> Array:
    return lax.dynamic_index_in_dim(a, t, axis=1, keepdims=False)


def scan_columns(
    body: Any, carry: Any, xs: tuple, reverse: bool = False, writable: int = 0
) -> tuple[Any, Any]:
    """``lax.scan`` over the time axis of sequences kept as columns, in place.

    ``xs`` is a tuple of (K, T, B) arrays, ``body(carry, xs_t) -> (carry, ys_t)`` works on their
    (K, B) steps; returns ``(carry, ys)``, every array of ys (K, T, B). A step reads its columns
    and writes its outputs' (a dynamic slice, a dynamic update of a carried buffer), so no
    sequence is transposed to (T, K, B) for the scan and back. Each output is written over the
    first of ``xs[writable:]`` with its shape not yet taken, whose step t the body has just
    read, instead of into a new array of zeros (docs/performance.md has the figures). The
    result is the same either way; it is faster where that input is needed neither after the
    scan nor, within a step, by anything but the output written over it (else XLA copies it).
    """
    T = xs[0].shape[1]
    _, ys_t = jax.eval_shape(body, carry, tuple(_at(x, 0) for x in xs))
    outputs, tree = jax.tree.flatten(ys_t)
    buffers, free, where = list(xs), list(range(writable, len(xs))), []
    for y in outputs:
        shape = (y.shape[0], T, *y.shape[1:])
        fits = [i for i in free if xs[i].shape == shape and xs[i].dtype == y.dtype]
        if fits:
            free.remove(fits[0])
            where.append(fits[0])
        else:
            where.append(len(buffers))
            buffers.append(jnp.zeros(shape, y.dtype))

    def step(i, loop):
        carry, buffers = loop
        t = T - 1 - i if reverse else i
        carry, ys_t = body(carry, tuple(_at(x, t) for x in buffers[: len(xs)]))
        buffers = list(buffers)
        for k, y_t in zip(where, jax.tree.leaves(ys_t), strict=True):
            buffers[k] = lax.dynamic_update_index_in_dim(buffers[k], y_t, t, axis=1)
        return carry, tuple(buffers)

    carry, buffers = lax.fori_loop(0, T, step, (carry, tuple(buffers)))
    return carry, jax.tree.unflatten(tree, [buffers[k] for k in where])
