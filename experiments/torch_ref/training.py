"""Training a PyTorch model exactly as the book and ``numpy_ref`` train theirs.

Letters: B batch, T steps, V vocabulary.

Mean cross-entropy over the ``B*T`` targets in time-major order, the book's clipping rule
``g <- g * min(1, theta / ||g||)`` (written out: ``torch.nn.utils.clip_grad_norm_`` divides by
``||g|| + 1e-6`` instead, see :func:`clip_gradients`), plain SGD ``p <- p - lr * g``, the state
detached between sequential minibatches and zeroed for every random one; the epoch, evaluation and
generation loops are numpy_ref's (:mod:`numpy_ref.loops`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from numpy_ref import loops
from numpy_ref.loops import EpochStats
from numpy_ref.spec import Params

Batch = tuple[np.ndarray, np.ndarray]


def resolve_device(device: str | None = None) -> torch.device:
    """A ``torch.device``: ``None`` is the book's ``try_gpu()`` (first GPU, else the CPU).

    Accepts ``cpu`` (or ``cpu:0``, PyTorch's one CPU device), ``gpu`` / ``cuda`` (the first GPU)
    and ``cuda:N``; a device that is not here is refused, never replaced.
    """
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    name = "cuda:0" if device in ("gpu", "cuda") else device
    try:
        resolved = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"--device {device} is not a PyTorch device: use cpu, cuda or cuda:N"
        ) from err
    if resolved.type == "cuda":
        count = torch.cuda.device_count()
        if (resolved.index or 0) >= count:
            raise ValueError(
                f"--device {device}: PyTorch sees {count} GPU(s) here; use --device cpu"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"--device {device} is not supported: use cpu, cuda or cuda:N")
    elif resolved.index not in (None, 0):
        raise ValueError(
            f"--device {device}: PyTorch has one CPU device, only cpu:0 exists: use --device cpu"
        )
    return resolved


def device_name(device: torch.device) -> str:
    """The book's device name, with the index always written: ``cpu:0``, ``cuda:0``."""
    return f"{device.type}:{device.index or 0}"


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def _detach(state: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(s.detach() for s in state)


def trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def clip_gradients(parameters: Iterable[Any], theta: float) -> torch.Tensor:
    """The book's rule: scale all gradients by ``min(1, theta / ||g||)``; returns ``||g||``.

    ``torch.nn.utils.clip_grad_norm_`` scales by ``min(1, theta / (||g|| + 1e-6))``: the same up to
    a relative 1e-6/||g||, which float64 parity tests see, so the rule is written out here exactly
    as ``numpy_ref.optim`` and optax's ``clip_by_global_norm`` apply it. The norm stays a tensor
    (no host synchronisation on a GPU).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(g * g) for g in grads))
    scale = torch.clamp(theta / norm, max=1.0)  # min(1, theta / ||g||)
    for g in grads:
        g.mul_(scale)
    return norm


def sgd(parameters: Iterable[Any], lr: float) -> None:
    """``p <- p - lr * grad`` (the book's ``sgd`` with ``batch_size=1``: the loss is a mean)."""
    with torch.no_grad():
        for p in parameters:
            p -= lr * p.grad


def loss_fn(logits: Any, Y: Any) -> Any:
    """Mean cross-entropy: logits (T, B, V), Y int (B, T); row t*B+b pairs with Y[b, t]."""
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V), Y.T.reshape(-1).long())


def loss_and_grads(
    model: Any, X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]
) -> tuple[float, Params, tuple[Any, ...]]:
    """The twin API's ``loss_and_grads`` for a torch model: (loss, grads in our layout, state)."""
    device = _device_of(model)
    model.zero_grad(set_to_none=True)
    logits, new_state = model(torch.as_tensor(X, device=device), state)
    loss = loss_fn(logits, torch.as_tensor(Y, device=device))
    loss.backward()
    return float(loss.detach()), model.named_grads(), _detach(new_state)


def train_step(
    model: Any, X: Any, Y: Any, state: tuple[Any, ...], lr: float, theta: float
) -> tuple[Any, tuple[Any, ...], Any]:
    """One minibatch: forward, mean CE, backward, clip to theta, SGD.

    Returns:
        The loss (a detached 0-d tensor, read only when the epoch ends), the new state and the
        global gradient norm before clipping (a 0-d tensor).
    """
    params = trainable(model)
    for p in params:
        p.grad = None
    logits, state = model(X, state)
    loss = loss_fn(logits, Y)
    loss.backward()
    norm = clip_gradients(params, theta)
    sgd(params, lr)
    return loss.detach(), state, norm.detach()


def train_epoch(
    model: Any, loader: Iterable[Batch], lr: float, theta: float, use_random_iter: bool
) -> tuple[Any, EpochStats]:
    """One epoch with the book's semantics, driven by ``numpy_ref.loops.run_epoch``.

    The model is updated in place and returned.
    """
    loops.check_rates(lr, theta)
    device = _device_of(model)

    def step(model: Any, X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]):
        X_t, Y_t = torch.as_tensor(X, device=device), torch.as_tensor(Y, device=device)
        loss, state, norm = train_step(model, X_t, Y_t, state, lr, theta)
        return model, loss, state, norm

    sync = (lambda _: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return loops.run_epoch(
        step, model, loader, model.begin_state, use_random_iter, detach=_detach, sync=sync
    )


def evaluate(model: Any, loader: Iterable[Batch]) -> float:
    """Perplexity on ``loader``'s data without updating (``numpy_ref.loops.evaluate``)."""
    device = _device_of(model)

    def loss_step(X: np.ndarray, Y: np.ndarray, state: tuple[Any, ...]):
        logits, state = model(torch.as_tensor(X, device=device), state)
        return loss_fn(logits, torch.as_tensor(Y, device=device)), state

    with torch.no_grad():
        return loops.evaluate(loss_step, loader, model.begin_state, detach=_detach)


def predict(prefix: str, num_preds: int, model: Any, vocab: Any) -> str:
    """The book's ``predict_ch8`` through numpy_ref's ``generate``: warm-up, then greedy."""
    device = _device_of(model)

    def step(token: int, state: tuple[Any, ...]) -> tuple[np.ndarray, tuple[Any, ...]]:
        logits, state = model(torch.tensor([[token]], device=device), state)  # (1, 1, V)
        return logits[0, 0].cpu().numpy(), state

    with torch.no_grad():
        return loops.generate(prefix, num_preds, vocab, step, model.begin_state(1))
