"""Gradient clipping and plain SGD, as the book trains its language models (d2l 8.5.5).

The rule (Pascanu, Mikolov and Bengio, "On the difficulty of training recurrent neural networks",
ICML 2013), with ``g`` every gradient array of the model seen as one long vector::

    ||g|| = sqrt(sum over arrays, sum over elements of g^2)              global L2 norm
    g    <- g * theta / ||g||     when ||g|| > theta, else unchanged      clipping (C1)
    p    <- p - lr * g                                                    SGD (C2)

Every function takes parameter-shaped dicts (see :mod:`numpy_ref.spec`) and returns new ones; no
argument is ever modified.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_ref.spec import Params, flatten_params, map_params


def global_norm(grads: Params) -> float:
    """The L2 norm of all gradient arrays together, ``sqrt(sum_k ||g_k||^2)``.

    Args:
        grads: a parameter-shaped dict of arrays.

    Returns:
        The norm as a Python float (each array's sum of squares is taken in its own dtype).
    """
    return math.sqrt(sum(float(np.sum(np.square(g))) for g in flatten_params(grads).values()))


def clip_by_global_norm(grads: Params, theta: float, norm: float | None = None) -> Params:
    """The book's clipping (C1): scale every gradient by ``theta / ||g||`` when ``||g|| > theta``.

    Args:
        grads: a parameter-shaped dict of arrays.
        theta: the largest norm allowed, > 0 (the book uses 1).
        norm: ``global_norm(grads)`` if the caller has it already.

    Returns:
        A new dict: copies of the arrays, unchanged when the norm is at most ``theta``; otherwise
        scaled so that their global norm is ``theta`` (up to rounding in the arrays' dtype).
    """
    if not theta > 0:
        raise ValueError(f"theta must be > 0 (the book uses 1), got {theta!r}")
    norm = global_norm(grads) if norm is None else norm
    if not norm > theta:  # also leaves a NaN norm alone: the NaN shows in the loss
        return map_params(np.copy, grads)
    return map_params(lambda g: g * np.asarray(theta / norm, dtype=g.dtype), grads)


def sgd(params: Params, grads: Params, lr: float) -> Params:
    """One step of plain stochastic gradient descent (C2): ``p - lr * g`` for every array.

    The book's loss is already a mean over the minibatch, which is why d2l calls its updater with
    ``batch_size=1``; here there is nothing to divide.

    Args:
        params: the parameter dict.
        grads: gradients with the same keys and shapes.
        lr: the learning rate.

    Returns:
        New parameters, each in the dtype of the old one.
    """
    return map_params(lambda p, g: p - np.asarray(lr, dtype=p.dtype) * g, params, grads)
