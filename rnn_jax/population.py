"""Many runs as one program: a population of (seed, lr, theta) members trained under ``jax.vmap``.

Letters: M members, S minibatches of an epoch, B batch, T steps, L layers, H hidden.

Member k starts from ``init_params(spec, seed_k)`` and reads the minibatches of a
``SeqDataLoader`` seeded with ``seed_k``; its ``lr_k`` and ``theta_k`` are values the program
takes, not constants baked into it, so a whole sweep is one compilation. Every array of a run
gains a leading member axis: parameters and optimiser state (M, ...), recurrent state (M, L, B, H),
minibatches (M, B, T). The training step is the single run's (:func:`rnn_jax.training.
train_step_fn`) under ``jax.vmap``, so member k *is* the single run with its settings, up to the
rounding of batched products.

An epoch, for every member in lockstep::

    batches of member k = its loader's pass (S_k minibatches; S_k differs by one with the offset)
    step s of the epoch, for every member at once:
        state_k = 0                             at s = 0, or at every s under random iteration
        params_k, state_k, loss_k, |g|_k = step(params_k, X_k[s], Y_k[s], state_k, lr_k, theta_k)
                                                only where member k has a minibatch s (active);
                                                elsewhere everything passes through unchanged

The epoch's minibatches are stacked (S, M, B, T) and scanned on the device, ``chunk`` steps per
call (one dispatch per chunk instead of one per step), on the parameters packed as a single
run's epoch trains them (``rnn_jax.cells.pack_layers`` at the chunk's start, unpacked at its
end). Members whose training stopped (diverged)
stay inactive. The arrays may be sharded over devices and processes on their member axis
(:mod:`rnn_jax.sharding`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from numpy_ref.loops import EpochStats, perplexity_of
from numpy_ref.population import Member, grid, max_batches, stack, unstack  # noqa: F401
from numpy_ref.spec import ModelSpec, Params, begin_state
from rnn_jax.cells import pack_layers, unpack_layers
from rnn_jax.models import EVALUATE, mean_loss
from rnn_jax.training import train_step_fn

Array = jax.Array


# --- the compiled chunks ---------------------------------------------------------------------


@lru_cache(maxsize=32)
def train_chunk(spec: ModelSpec, grad_mode: str = "bptt") -> Any:
    """``chunk(params, opt_state, state, Xs, Ys, active, reset, lr, theta) -> (params, opt_state,
    state, losses (S, M), grad_norms (S, M))``: S training steps of M members, scanned.

    ``Xs``, ``Ys`` (S, M, B, T); ``active`` (S, M) bool; ``reset`` (S,) bool (zero state before
    the step); ``lr``, ``theta`` (M,). Parameters, optimiser state and state are donated.
    """
    step = train_step_fn(spec, grad_mode)

    def member(params, opt_state, state, X, Y, active, reset, lr, theta):
        state = jax.tree.map(lambda s: jnp.where(reset, jnp.zeros_like(s), s), state)
        new = step(params, opt_state, X, Y, state, lr, theta)
        keep = partial(jax.tree.map, lambda n, o: jnp.where(active, n, o))
        return keep(new[0], params), keep(new[1], opt_state), keep(new[3], state), new[2], new[4]

    axes = (0, 0, 0, 0, 0, 0, None, 0, 0)  # every argument per member but ``reset``
    batched = jax.vmap(member, in_axes=axes)

    def members(*args):
        if jax.tree.leaves(args[0])[0].shape[0] > 1:
            return batched(*args)
        # one member: its own step, not vmap over one, whose size-1 axis made XLA copy the
        # reverse scan's buffer at every time step (docs/scaling.md)
        first = lambda a: jax.tree.map(lambda x: x[0], a)  # noqa: E731
        one = [a if axis is None else first(a) for a, axis in zip(args, axes, strict=True)]
        return jax.tree.map(lambda x: x[None], member(*one))

    def chunk(params, opt_state, state, Xs, Ys, active, reset, lr, theta):
        def body(carry, xs):
            params, opt_state, state, loss, norm = members(*carry, *xs, lr, theta)
            return (params, opt_state, state), (loss, norm)

        packed = pack_layers(spec, params)  # the step on 3 arrays a layer, as a single run's
        carry, (losses, norms) = lax.scan(body, (packed, opt_state, state), (Xs, Ys, active, reset))
        return (unpack_layers(spec, carry[0]), *carry[1:], losses, norms)

    return jax.jit(chunk, donate_argnums=(0, 1, 2))


@lru_cache(maxsize=32)
def eval_chunk(spec: ModelSpec) -> Any:
    """``chunk(params, state, Xs, Ys, active) -> (state, losses (S, M))``: the loss of S
    minibatches per member without updating, the state carried (validation)."""

    def member(params, state, X, Y, active):
        loss, new_state = mean_loss(params, spec, X, Y, state, EVALUATE)
        return jax.tree.map(lambda n, o: jnp.where(active, n, o), new_state, state), loss

    members = jax.vmap(member)

    def chunk(params, state, Xs, Ys, active):
        def body(state, xs):
            return members(params, state, *xs)

        return lax.scan(body, state, (Xs, Ys, active))

    return jax.jit(chunk)


# --- one epoch -------------------------------------------------------------------------------


@dataclass
class Placement:
    """How the member axis is laid out: the mesh (or None: all on ``device``), the member count
    after padding, and the members this process holds."""

    mesh: Any = None
    count: int = 0
    local: range = range(0)
    device: Any = None  # without a mesh; None: JAX's default device

    def put(self, local: Any, axis: int = 0) -> Any:
        """This process's rows (members on ``axis``) as global arrays of ``count`` members."""
        if self.mesh is None:
            return jax.device_put(jax.tree.map(np.asarray, local), self.device)
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from rnn_jax.sharding import MEMBER, global_array

        def put_one(x: np.ndarray) -> Array:
            spec = P(*([None] * axis), MEMBER)
            shape = (*x.shape[:axis], self.count, *x.shape[axis + 1 :])
            return global_array(x, NamedSharding(self.mesh, spec), shape)

        return jax.tree.map(put_one, local)


def _stacked_batches(
    passes: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
    steps: int,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each member's pass padded to ``steps``: ``Xs``, ``Ys`` (steps, M, B, T), ``active``."""
    M = len(passes)
    Xs = np.zeros((steps, M, *shape), np.int32)
    Ys = np.zeros_like(Xs)
    active = np.zeros((steps, M), bool)
    for k, batches in enumerate(passes):
        for s, (X, Y) in enumerate(batches):
            Xs[s, k], Ys[s, k], active[s, k] = X, Y, True
    return Xs, Ys, active


def _epoch_stats(
    losses: np.ndarray, norms: np.ndarray | None, active: np.ndarray, tokens: int, seconds: float
) -> list[EpochStats]:
    """Per member: perplexity over its active steps, tokens/s, the grad norms of those steps."""
    stats = []
    for k in range(active.shape[1]):
        on = active[:, k]
        n = int(on.sum()) * tokens
        total = float(np.sum(losses[on, k].astype(np.float64)) * tokens)
        grad_norms = () if norms is None else tuple(float(x) for x in norms[on, k])
        ppl = perplexity_of(total, n) if n else float("nan")
        stats.append(EpochStats(ppl, n / seconds, n, seconds, grad_norms))
    return stats


class Stopped(Exception):
    """Raised between two chunks when ``stop()`` turned True; the epoch is not complete."""


def train_epoch(
    spec: ModelSpec,
    params: Params,
    opt_state: Any,
    loaders: Sequence[Any],
    lr: Array,
    theta: Array,
    use_random_iter: bool,
    steps: int,
    alive: Sequence[bool],
    place: Placement,
    batch_shape: tuple[int, int],
    chunk: int = 8,
    grad_mode: str = "bptt",
    stop: Any = None,
) -> tuple[Params, Any, list[EpochStats]]:
    """One epoch of every member (module docstring).

    Args:
        spec: the model.
        params, opt_state: the members' (M, ...) arrays, as :meth:`Placement.put` lays them out;
            donated.
        loaders: this process's members' loaders, one pass each (a member not ``alive`` is not
            iterated: its training stopped, or it only pads the member axis).
        lr, theta: (M,) arrays.
        use_random_iter: zero state before every minibatch instead of carrying it.
        steps: the epoch's length in minibatches, at least every member's pass (the same in
            every process: :func:`max_batches`), rounded up to a multiple of ``chunk``.
        alive: per local member, whether it still trains.
        place: the layout of the member axis.
        batch_shape: (B, T) of a minibatch.
        chunk: minibatches per compiled call.
        grad_mode: as ``rnn_jax.loss_and_grads``.
        stop: polled before every chunk (the same answer in every process, e.g. a signal all
            of them received); True raises :class:`Stopped`.

    Returns:
        ``(params, opt_state, stats)``, ``stats`` one :class:`EpochStats` per local member.
    """
    start = time.perf_counter()
    passes = [list(loader) if on else [] for loader, on in zip(loaders, alive, strict=True)]
    Xs, Ys, active = _stacked_batches(passes, steps, batch_shape)
    B = batch_shape[0]
    dtype = jax.tree.leaves(params)[0].dtype
    state = place.put(stack([begin_state(spec, B, dtype)] * len(loaders)))
    reset = np.zeros(steps, bool) | use_random_iter
    reset[0] = True
    run = train_chunk(spec, grad_mode)
    losses, norms = [], []
    for c in range(0, steps, chunk):
        if stop is not None and stop():
            raise Stopped
        part = slice(c, c + chunk)
        batch = place.put((Xs[part], Ys[part], active[part]), axis=1)
        params, opt_state, state, loss, norm = run(
            params, opt_state, state, *batch, reset[part], lr, theta
        )
        losses.append(loss)
        norms.append(norm)
    from rnn_jax.sharding import local_rows

    losses = local_rows(jnp.concatenate(losses).T).T  # (S, local members)
    norms = local_rows(jnp.concatenate(norms).T).T
    seconds = time.perf_counter() - start
    return params, opt_state, _epoch_stats(losses, norms, active, Xs[0, 0].size, seconds)


def evaluate(
    spec: ModelSpec,
    params: Params,
    loaders: Sequence[Any],
    steps: int,
    place: Placement,
    batch_shape: tuple[int, int],
    chunk: int = 8,
) -> list[float]:
    """Every local member's perplexity on its loader's pass (state carried, no update); a
    loader that is None (a padding member) gives NaN."""
    passes = [[] if loader is None else list(loader) for loader in loaders]
    Xs, Ys, active = _stacked_batches(passes, steps, batch_shape)
    dtype = jax.tree.leaves(params)[0].dtype
    state = place.put(stack([begin_state(spec, Xs.shape[2], dtype)] * len(loaders)))
    run = eval_chunk(spec)
    losses = []
    for c in range(0, steps, chunk):
        part = slice(c, c + chunk)
        state, loss = run(params, state, *place.put((Xs[part], Ys[part], active[part]), axis=1))
        losses.append(loss)
    from rnn_jax.sharding import local_rows

    losses = local_rows(jnp.concatenate(losses).T).T
    return [s.perplexity for s in _epoch_stats(losses, None, active, Xs[0, 0].size, 1.0)]
