"""An epoch as one compiled program, for M members trained in lockstep (M = 1: a single run).

Letters: M members, S minibatches of a chunk, B batch, T steps, L layers, H hidden, V vocabulary.

What runs between two minibatches of the book's ``train_epoch_ch8`` is host work: fetch the next
batch, copy it to the device, dispatch the step, read the loss. Here the host stacks a chunk of
the epoch's minibatches (at most :data:`CHUNK`, from the same seeded loaders, in the same order),
copies it to the device as one array, and one compiled call runs them all; the losses and the
gradient norms come back in one transfer per epoch::

    for each chunk of the epoch (host):
        Xs, Ys = the next S minibatches of every member's loader        (S, M, B, T), one copy
        params, opt_state, state, losses, norms = program(params, opt_state, state, Xs, Ys, ...)
    for each member k, in the program (a ``fori_loop`` over its count_k minibatches):
        state_k = 0                                  at the epoch's first minibatch, or always
                                                     under random iteration
        params_k, opt_state_k, loss_k, state_k, |g|_k = step(params_k, ..., X_k[s], Y_k[s],
                                                               state_k, lr_k, theta_k)

``step`` is the single run's training step (:func:`rnn_jax.training.train_step_fn`: loss and
gradients, clipping to ``theta``, SGD), so the program computes what the per-step loop
(:func:`rnn_jax.training.train_epoch`) computes, in the same order; tests/test_epoch.py pairs them.
A member's loop runs its own number of minibatches (a pass may be one shorter than another's
with its random offset): nothing is computed for padding. Under ``jax.vmap`` (M > 1) the loop
runs the longest member's count and keeps the others' values where they have no minibatch; one
member runs its step directly, not under ``vmap`` over an axis of one (whose size-1 axis made
XLA copy buffers at every time step, docs/scaling.md).

The parameters stay packed on the device between epochs (:func:`rnn_jax.cells.pack_layers`,
the step's form: 3 arrays a layer), and no buffer is donated: the parameters of the last
complete epoch stay valid while the next one runs, so an interrupt can save them. A chunk is at
most :data:`CHUNK` minibatches, so that the stacked batches stay small (a 100 MB corpus runs in
chunks) and a request to stop, polled between chunks, is answered within about a second.

Validation is one program of the same shape without the update (:func:`evaluate`). The member
axis may be split over devices and processes, and a single model's rows over a ``batch`` axis
(:class:`Placement`, :mod:`rnn_jax.sharding`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh

from numpy_ref.loops import EpochStats, perplexity_of
from numpy_ref.population import max_batches, stack, unstack
from numpy_ref.spec import ModelSpec, Params, begin_state
from rnn_jax.cells import pack_layers, unpack_layers
from rnn_jax.models import EVALUATE, mean_loss
from rnn_jax.sharding import Placement
from rnn_jax.training import init_opt_state, train_step_fn

Array = jax.Array
CHUNK = 32  # the most minibatches one compiled call runs: ~0.7 s of the book's RNN on this CPU


def chunk_plan(steps: int, chunk: int = CHUNK) -> tuple[int, int]:
    """``(count, length)``: an epoch of at most ``steps`` minibatches as ``count`` calls of
    ``length`` minibatches each, ``length <= chunk``, as even as can be (9 steps: one call of 9;
    100 steps at 32: four of 25), so that padding is less than one call's worth."""
    count = -(-steps // chunk)
    return count, -(-steps // count)


# --- the compiled programs ---------------------------------------------------------------------


def _over_members(one: Callable[..., Any], axes: tuple) -> Callable[..., Any]:
    """``one`` (a member's function) over the leading member axis: ``jax.vmap`` for M > 1, the
    function itself on the only member for M = 1 (``axes``: per argument 0, or None: shared)."""
    batched = jax.vmap(one, in_axes=axes)

    def members(*args):
        if jax.tree.leaves(args[0])[0].shape[0] > 1:
            return batched(*args)
        mine = [
            a if axis is None else jax.tree.map(lambda x, i=axis: jnp.take(x, 0, axis=i), a)
            for a, axis in zip(args, axes, strict=True)
        ]
        return jax.tree.map(lambda x: x[None], one(*mine))

    return members


def _zero_if(reset: Array, state: Any) -> Any:
    return jax.tree.map(lambda s: jnp.where(reset, jnp.zeros_like(s), s), state)


@lru_cache(maxsize=32)
def train_program(spec: ModelSpec, grad_mode: str = "bptt") -> Any:
    """The compiled chunk of an epoch.

    ``program(params, opt_state, state, Xs, Ys, counts, first, random, lr, theta) -> (params,
    opt_state, state, losses (S, M), grad_norms (S, M))``: member k trains on its first
    ``counts[k]`` minibatches of ``Xs``, ``Ys`` (S, M, B, T) int; ``params`` packed, every array
    with the member axis first (parameters, optimiser state, ``state`` (M, L, B, H), ``lr``,
    ``theta`` (M,)); ``first``: the chunk starts the epoch (zero state before its first
    minibatch); ``random``: zero state before every minibatch. Losses and norms of steps past a
    member's count are 0. Nothing is donated (module docstring).
    """
    step = train_step_fn(spec, grad_mode)

    def member(params, opt_state, state, Xs, Ys, count, first, random, lr, theta):
        dtype = jax.tree.leaves(params)[0].dtype
        zeros = jnp.zeros(Xs.shape[0], dtype)

        def body(s, carry):
            params, opt_state, state, losses, norms = carry
            state = _zero_if(random | (first & (s == 0)), state)
            params, opt_state, loss, state, norm = step(
                params, opt_state, Xs[s], Ys[s], state, lr, theta
            )
            return params, opt_state, state, losses.at[s].set(loss), norms.at[s].set(norm)

        return lax.fori_loop(0, count, body, (params, opt_state, state, zeros, zeros))

    axes = (0, 0, 0, 1, 1, 0, None, None, 0, 0)  # the batches' member axis is their second
    members = _over_members(member, axes)

    def program(params, opt_state, state, Xs, Ys, counts, first, random, lr, theta):
        args = (params, opt_state, state, Xs, Ys, counts, first, random, lr, theta)
        params, opt_state, state, losses, norms = members(*args)
        return params, opt_state, state, losses.T, norms.T

    return jax.jit(program)


@lru_cache(maxsize=32)
def eval_program(spec: ModelSpec) -> Any:
    """``program(params, state, Xs, Ys, counts) -> (state, losses (S, M))``: the mean loss of
    each member's first ``counts[k]`` minibatches, the state carried, nothing updated."""

    def member(params, state, Xs, Ys, count):
        def body(s, carry):
            state, losses = carry
            loss, state = mean_loss(params, spec, Xs[s], Ys[s], state, EVALUATE)
            return state, losses.at[s].set(loss)

        dtype = jax.tree.leaves(params)[0].dtype
        return lax.fori_loop(0, count, body, (state, jnp.zeros(Xs.shape[0], dtype)))

    members = _over_members(member, (0, 0, 1, 1, 0))

    def program(params, state, Xs, Ys, counts):
        state, losses = members(params, state, Xs, Ys, counts)
        return state, losses.T

    return jax.jit(program)


# --- the host side ------------------------------------------------------------------------------


@dataclass
class Members:
    """M members on the device: packed parameters, optimiser state and rates, (M, ...) each.

    The only mutable thing of a training loop; :func:`train_epoch` replaces ``params`` and
    ``opt_state`` with new arrays (the old ones stay valid: the last complete epoch).
    """

    spec: ModelSpec
    params: Params
    opt_state: Any
    lr: Array
    theta: Array
    place: Placement

    @classmethod
    def create(
        cls,
        spec: ModelSpec,
        params: Sequence[Params],
        rates: Sequence[tuple[float, float]],
        place: Placement | None = None,
    ) -> Members:
        """This process's members from their shared parameter dicts (NumPy, one per member) and
        their ``(lr, theta)``."""
        place = place or Placement(count=len(params), local=range(len(params)))
        dtype = np.asarray(params[0]["W_hq"]).dtype
        packed = _pack(spec)(place.put(stack(params)))
        rates = np.asarray(rates, dtype).reshape(len(params), 2)
        lr, theta = place.put(rates[:, 0]), place.put(rates[:, 1])
        return cls(spec, packed, jax.vmap(init_opt_state)(packed), lr, theta, place)

    def to_numpy(self, params: Params | None = None) -> list[Params]:
        """The shared parameter dicts of this process's members (of ``params``, default the
        current ones), as NumPy."""
        shared = _unpack(self.spec)(self.params if params is None else params)
        return unstack(self.place.rows(shared))


@lru_cache(maxsize=32)
def _pack(spec: ModelSpec) -> Any:
    return jax.jit(lambda params: pack_layers(spec, params))


@lru_cache(maxsize=32)
def _unpack(spec: ModelSpec) -> Any:
    return jax.jit(lambda packed: unpack_layers(spec, packed))


class Stopped(Exception):
    """Raised between two chunks when ``stop()`` turned True; the epoch is not complete."""


def _chunks(
    passes: list[Iterator | None], count: int, length: int, shape: tuple[int, int]
) -> Iterator[tuple[np.ndarray, ...]]:
    """``count`` chunks of ``(Xs, Ys (length, M, B, T) int32, counts (M,) int32)`` from each
    member's pass (None: a member that does not train), each batch read once, in order."""
    M = len(passes)
    for _ in range(count):
        Xs = np.zeros((length, M, *shape), np.int32)
        Ys = np.zeros_like(Xs)
        counts = np.zeros(M, np.int32)
        for k, batches in enumerate(passes):
            if batches is None:
                continue
            for s in range(length):
                batch = next(batches, None)
                if batch is None:
                    break
                Xs[s, k], Ys[s, k] = batch
                counts[k] = s + 1
        yield Xs, Ys, counts


def _stats(
    losses: np.ndarray, norms: np.ndarray | None, counts: np.ndarray, tokens: int, seconds: float
) -> list[EpochStats]:
    """Per member: perplexity over its minibatches (losses summed in float64), tokens/s, norms."""
    stats = []
    for k, n in enumerate(counts):
        n = int(n)
        total = float(np.sum(losses[:n, k].astype(np.float64)) * tokens)
        ppl = perplexity_of(total, n * tokens) if n else float("nan")
        grad_norms = () if norms is None else tuple(float(x) for x in norms[:n, k])
        stats.append(EpochStats(ppl, n * tokens / seconds, n * tokens, seconds, grad_norms))
    return stats


def _zero_states(members: Members, batch_size: int) -> Any:
    dtype = jax.tree.leaves(members.params)[0].dtype
    zero = stack([begin_state(members.spec, batch_size, dtype)] * len(members.place.local))
    return members.place.put(zero, rows=2)


def _run(
    loaders: Sequence[Any],
    members: Members,
    batch_shape: tuple[int, int],
    steps: int,
    chunk: int,
    stop: Any,
    call: Callable[..., Any],
) -> tuple[np.ndarray, ...]:
    """The chunks of one pass of ``loaders`` through ``call(Xs, Ys, counts, first)``; the
    per-step outputs of every chunk as (S, local M) NumPy arrays, and the counts per member."""
    count, length = chunk_plan(steps, chunk)
    passes = [None if loader is None else iter(loader) for loader in loaders]
    outputs, counts, place = [], np.zeros(len(loaders), np.int64), members.place
    for c, (Xs, Ys, n) in enumerate(_chunks(passes, count, length, batch_shape)):
        if stop is not None and stop():
            raise Stopped
        Xs, Ys = place.put(Xs, axis=1, rows=2), place.put(Ys, axis=1, rows=2)
        outputs.append(call(Xs, Ys, place.put(n), c == 0))
        counts += n
    per_step = [np.concatenate([place.rows(o[i].T).T for o in outputs]) for i in range(2)]
    return per_step[0], per_step[1], counts


def train_epoch(
    members: Members,
    loaders: Sequence[Any],
    use_random_iter: bool,
    batch_shape: tuple[int, int],
    steps: int,
    chunk: int = CHUNK,
    grad_mode: str = "bptt",
    stop: Callable[[], bool] | None = None,
) -> list[EpochStats]:
    """One epoch of every member (module docstring); ``members`` gets the trained parameters.

    Args:
        members: the members on the device; its ``params`` and ``opt_state`` are replaced only
            once the whole epoch ran.
        loaders: this process's members' loaders, one pass each; None for a member that does not
            train (its training stopped, or it only pads the member axis).
        use_random_iter: zero state before every minibatch instead of carrying it.
        batch_shape: (B, T) of a minibatch.
        steps: the most minibatches a pass yields (:func:`numpy_ref.population.max_batches`;
            the same in every process).
        chunk: the most minibatches of one call.
        grad_mode: as ``rnn_jax.loss_and_grads``.
        stop: polled before every chunk (the same answer in every process); True raises
            :class:`Stopped`, and ``members`` keeps the last complete epoch.

    Returns:
        One :class:`EpochStats` per local member (a member without a loader: NaN perplexity).
    """
    start = time.perf_counter()
    program = train_program(members.spec, grad_mode)
    carry = [members.params, members.opt_state, _zero_states(members, batch_shape[0])]

    def call(Xs, Ys, counts, first):
        *carry[:], losses, norms = program(
            *carry, Xs, Ys, counts, first, use_random_iter, members.lr, members.theta
        )
        return losses, norms

    losses, norms, counts = _run(loaders, members, batch_shape, steps, chunk, stop, call)
    members.params, members.opt_state = carry[0], carry[1]
    seconds = time.perf_counter() - start
    return _stats(losses, norms, counts, int(np.prod(batch_shape)), seconds)


def evaluate(
    members: Members,
    loaders: Sequence[Any],
    batch_shape: tuple[int, int],
    steps: int,
    chunk: int = CHUNK,
) -> list[float]:
    """Every local member's perplexity on its loader's pass (state carried, nothing updated), in
    one compiled call per chunk; a loader that is None gives NaN."""
    program = eval_program(members.spec)
    state = [_zero_states(members, batch_shape[0])]

    def call(Xs, Ys, counts, first):
        state[0], losses = program(members.params, state[0], Xs, Ys, counts)
        return losses, losses

    losses, _, counts = _run(loaders, members, batch_shape, steps, chunk, None, call)
    stats = _stats(losses, None, counts, int(np.prod(batch_shape)), 1.0)
    return [s.perplexity for s in stats]


def data_parallel_train_epoch(
    spec: Any,
    params: Any,
    loader: Any,
    lr: float,
    theta: float,
    use_random_iter: bool,
    mesh: Mesh,
    grad_mode: str = "bptt",
) -> tuple[Any, Any]:
    """One epoch of one model, data-parallel over ``mesh``'s batch axis: the rows of every
    minibatch and of the state split over the devices, the parameters replicated, XLA reducing
    the gradients; the epoch is this module's program.

    Returns ``(params, EpochStats)`` as ``rnn_jax.train_epoch`` does (the parameters as NumPy).
    """
    place = Placement(mesh, split="batch")
    host = jax.tree.map(np.asarray, params)
    members = Members.create(spec, [host], [(lr, theta)], place)
    shape = (loader.batch_size, loader.num_steps)
    steps = max_batches(len(loader.corpus), *shape, loader.use_random_iter)
    (stats,) = train_epoch(members, [loader], use_random_iter, shape, steps, grad_mode=grad_mode)
    return members.to_numpy()[0], stats
