"""A population of runs: members (seed, lr, theta), and their arrays side by side.

Letters: M members.

Member k of a population is the single run with its settings: initial weights
``init_params(spec, seed_k)``, the minibatches of a loader seeded with ``seed_k``, its own lr and
theta. NumPy and PyTorch train the members one after another; ``rnn_jax.population`` trains them
as one program over arrays with a leading member axis (:func:`stack`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpy_ref.checks import check_positive
from numpy_ref.spec import flatten_params, unflatten_params


@dataclass(frozen=True)
class Member:
    """One run of a population: its seed (initial weights and minibatches), lr and theta."""

    seed: int
    lr: float
    theta: float

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_positive("theta", self.theta)

    @property
    def name(self) -> str:
        """The member's run directory: ``seed3-lr1-theta1``."""
        return f"seed{self.seed}-lr{self.lr:g}-theta{self.theta:g}"

    @property
    def setting(self) -> tuple[float, float]:
        """What the members of one setting share: ``(lr, theta)``."""
        return (self.lr, self.theta)


def grid(seeds: Sequence[int], lrs: Sequence[float], thetas: Sequence[float]) -> list[Member]:
    """Every (lr, theta) with every seed: settings in the given order, seeds inside each."""
    return [Member(int(s), float(lr), float(th)) for lr in lrs for th in thetas for s in seeds]


def stack(trees: Sequence[Any]) -> Any:
    """Parameter dicts (or states: tuples of arrays) of one layout -> one of the same layout whose
    arrays have a leading member axis (M, ...), NumPy."""
    first = trees[0]
    if isinstance(first, dict):
        flats = [flatten_params(t) for t in trees]
        return unflatten_params(
            {key: np.stack([np.asarray(f[key]) for f in flats]) for key in flats[0]}
        )
    return type(first)(np.stack([np.asarray(t[i]) for t in trees]) for i in range(len(first)))


def unstack(tree: Any) -> list[Any]:
    """Inverse of :func:`stack`: one NumPy parameter dict (or state) per member."""
    if isinstance(tree, dict):
        flat = {key: np.asarray(value) for key, value in flatten_params(tree).items()}
        count = next(iter(flat.values())).shape[0]
        return [unflatten_params({key: v[k] for key, v in flat.items()}) for k in range(count)]
    arrays = [np.asarray(a) for a in tree]
    return [type(tree)(a[k] for a in arrays) for k in range(arrays[0].shape[0])]


def max_batches(corpus_length: int, batch_size: int, num_steps: int, random: bool) -> int:
    """The most minibatches one pass of a ``SeqDataLoader`` yields: at a random offset of 0."""
    if random:
        return ((corpus_length - 1) // num_steps) // batch_size
    return ((corpus_length - 1) // batch_size) // num_steps
