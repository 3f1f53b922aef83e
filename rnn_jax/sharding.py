"""Devices and hosts: one mesh for populations (a ``member`` axis) and for data parallelism (a
``batch`` axis), JAX's multi-process runtime, and the arrays each process feeds.

Letters: M members, B batch.

- A population's arrays carry a leading member axis; it is split over the mesh's ``member`` axis
  (``P("member")``): every device trains its own members and no device talks to another.
- Data parallelism of one model splits the rows of a minibatch over the ``batch`` axis
  (``P("batch")`` for ``X``, ``Y`` (B, T) and ``P(None, "batch")`` for the state (L, B, H)); the
  parameters are replicated, and XLA inserts the reduction of the gradients over devices.
- Across hosts, :func:`initialize` starts JAX's multi-process runtime (``jax.distributed``); the
  mesh then spans every process's devices, and each process builds the global arrays from the rows
  it holds (:func:`global_array`) and reads back its own rows (:func:`local_rows`);
  :class:`Placement` puts a group's arrays (rnn_jax.epoch) where one of these layouts wants them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MEMBER, BATCH = "member", "batch"
ENV = {  # the usual variables of a launcher (SLURM sets its own; see docs/scaling.md)
    "coordinator": "RNN_LM_COORDINATOR",
    "num_processes": "RNN_LM_NUM_PROCESSES",
    "process_id": "RNN_LM_PROCESS_ID",
}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start JAX's multi-process runtime when asked to; returns whether it runs.

    The arguments come from flags, else from ``$RNN_LM_COORDINATOR`` (``host:port``),
    ``$RNN_LM_NUM_PROCESSES`` and ``$RNN_LM_PROCESS_ID``; with none of them set this is a
    single-process run and nothing happens (on a SLURM or TPU cluster, ``jax.distributed``
    finds them itself: set ``$RNN_LM_COORDINATOR=auto``). On CPUs the processes exchange data
    through gloo.
    """
    coordinator = coordinator or os.environ.get(ENV["coordinator"])
    if coordinator is None:
        return False
    if num_processes is None and os.environ.get(ENV["num_processes"]):
        num_processes = int(os.environ[ENV["num_processes"]])
    if process_id is None and os.environ.get(ENV["process_id"]):
        process_id = int(os.environ[ENV["process_id"]])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def make_mesh(members: int = 0, batch: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh of ``(members, batch)`` devices over ``devices`` (default: every device of every
    process); ``members=0`` takes all the devices the batch axis leaves."""
    devices = list(jax.devices() if devices is None else devices)
    if batch < 1 or len(devices) % batch:
        raise ValueError(f"a batch axis of {batch} does not divide the {len(devices)} devices")
    members = members or len(devices) // batch
    if members * batch > len(devices):
        raise ValueError(
            f"a mesh of {members} x {batch} devices needs {members * batch}, "
            f"JAX sees {len(devices)}: {devices}"
        )
    grid = np.array(devices[: members * batch]).reshape(members, batch)
    return Mesh(grid, (MEMBER, BATCH))


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis over the ``member`` axis, the rest whole (params, states, batches, rates)."""
    return NamedSharding(mesh, P(MEMBER))


def padded_count(count: int, mesh: Mesh) -> int:
    """The member count rounded up to a multiple of the ``member`` axis (padding members)."""
    size = mesh.shape[MEMBER]
    return -(-count // size) * size


def local_member_range(count: int, mesh: Mesh) -> range:
    """The members whose rows this process holds (all of them in a single process).

    The member axis is split evenly over the mesh's devices in order; a process holds the rows
    of its addressable devices, which must be contiguous (they are with :func:`make_mesh`).
    """
    per_device = count // mesh.shape[MEMBER]
    mine = [i for i, row in enumerate(mesh.devices) if row[0].process_index == jax.process_index()]
    if not mine:
        return range(0)
    if mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError("this process's devices are not contiguous on the member axis")
    return range(mine[0] * per_device, (mine[-1] + 1) * per_device)


def global_array(local: Any, sharding: NamedSharding, global_shape: tuple[int, ...]) -> jax.Array:
    """The global array of which this process holds the rows ``local`` (along the sharded axis).

    In a single process this is ``jax.device_put(local, sharding)``.
    """
    return jax.make_array_from_process_local_data(sharding, np.asarray(local), global_shape)


def local_rows(tree: Any) -> Any:
    """This process's rows of arrays sharded on their leading axis, as NumPy, in order."""

    def rows(x: jax.Array) -> np.ndarray:
        if x.is_fully_addressable:
            return np.asarray(x)
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        unique = {s.index[0].start: np.asarray(s.data) for s in shards}  # replicas once
        return np.concatenate([unique[k] for k in sorted(unique)])

    return jax.tree.map(rows, tree)


@dataclass(frozen=True)
class Placement:
    """Where the arrays of M members go.

    ``mesh`` None: everything on ``device`` (None: JAX's default). With a mesh, ``member``
    (default) splits the member axis over its ``member`` axis, each process putting the rows of
    the members ``local`` it holds (``count`` members in all, padding included); ``batch``
    replicates the (one) member's parameters and splits the rows of every minibatch and state
    over the ``batch`` axis (data parallelism of one model).
    """

    mesh: Any = None
    count: int = 1
    local: range = range(1)
    device: Any = None
    split: str = "member"  # or "batch"

    def put(self, local: Any, axis: int = 0, rows: int | None = None) -> Any:
        """This process's members' arrays (member axis ``axis``) as global arrays; ``rows``:
        the axis of the batch rows, split under data parallelism."""
        if self.mesh is None:
            return jax.device_put(jax.tree.map(np.asarray, local), self.device)
        if self.split == "batch":
            spec = [None] * (rows + 1) if rows is not None else []
            if rows is not None:
                spec[rows] = BATCH
            return jax.device_put(
                jax.tree.map(np.asarray, local), NamedSharding(self.mesh, P(*spec))
            )

        def put_one(x: np.ndarray) -> jax.Array:
            spec = P(*([None] * axis), MEMBER)
            shape = (*x.shape[:axis], self.count, *x.shape[axis + 1 :])
            return global_array(x, NamedSharding(self.mesh, spec), shape)

        return jax.tree.map(put_one, local)

    def rows(self, tree: Any) -> Any:
        """This process's members' rows of (M, ...) arrays, as NumPy."""
        if self.mesh is None or self.split == "batch":
            return jax.tree.map(np.asarray, tree)
        return local_rows(tree)
