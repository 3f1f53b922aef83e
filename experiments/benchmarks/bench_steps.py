"""The training steps that experiments/benchmarks/bench.py times: one per implementation, same
work each.

A step is forward, backward, clipping to theta = 1 and an SGD update on one (B, T) = (32, 35)
minibatch of a V = 28 vocabulary; it returns when its work is done (JAX: the loss is ready;
PyTorch on a GPU: ``torch.cuda.synchronize``). The minibatch is placed on the device once, before
the first step, for JAX and PyTorch alike.

- ``numpy``: numpy_ref's ``loss_and_grads`` + ``clip_by_global_norm`` + ``sgd`` (CPU only);
- ``jax-bptt`` / ``jax-autodiff``: ``rnn_jax.make_train_step`` (one jit region, donated buffers)
  with the hand-written backward or with ``jax.grad`` through the scan, on the parameters packed
  as ``rnn_jax.train_epoch`` trains them (``rnn_jax.training.pack``);
- ``torch``: the book's concise model, ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` on one-hot inputs, a
  ``Linear`` output, ``CrossEntropyLoss``, ``clip_grad_norm_``, ``torch.optim.SGD`` (on a GPU,
  PyTorch runs these layers with cuDNN; on this CPU, with oneDNN's fused RNN);
- ``torch-scratch`` (rnn only): the book's from-scratch RNN (d2l 8.5): a Python loop over time of
  ``tanh(X_t W_xh + H W_hh + b_h)`` on one-hot inputs, autograd, its ``grad_clipping``, its
  ``sgd``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numpy_ref import models as np_models
from numpy_ref import optim as np_optim
from numpy_ref.spec import ModelSpec, begin_state, init_params

BATCH, STEPS, VOCAB, LR, THETA = 32, 35, 28, 1.0, 1.0
DEVICES = ("cpu", "gpu")

Step = Callable[[], Any]  # runs one training step, returns when it is done


def numpy_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray, device: str = "cpu") -> Step:
    if device != "cpu":
        raise ValueError("numpy runs on the CPU only: leave numpy out of --impls on a GPU")
    params = init_params(spec, 0)
    state = begin_state(spec, BATCH)

    def step() -> None:
        nonlocal params
        _, grads, _ = np_models.loss_and_grads(spec, params, X, Y, state)
        params = np_optim.sgd(params, np_optim.clip_by_global_norm(grads, THETA), LR)

    return step


def jax_step(
    spec: ModelSpec, X: np.ndarray, Y: np.ndarray, grad_mode: str, device: str = "cpu"
) -> Step:
    import jax

    import rnn_jax
    from rnn_jax.training import pack

    init_opt_state, train_step = rnn_jax.make_train_step(spec, LR, THETA, grad_mode)
    params = pack(spec, init_params(spec, 0), rnn_jax.get_device(device))  # as train_epoch does
    where = rnn_jax.device_of(params)
    carry = [params, init_opt_state(params)]
    state = rnn_jax.begin_state(spec, BATCH, device=where)
    Xd, Yd = jax.device_put((X, Y), where)

    def step() -> None:
        params, opt_state, loss, _, _ = train_step(*carry, Xd, Yd, state)
        carry[:] = [params, opt_state]
        loss.block_until_ready()

    return step


def _torch_device(device: str) -> Any:
    import torch

    if device == "gpu":
        if not torch.cuda.is_available():
            raise ValueError("--device gpu: PyTorch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def _synchronizer(where: Any) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if where.type == "cuda" else (lambda: None)


def torch_concise_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray, device: str = "cpu") -> Step:
    import torch
    from torch import nn

    where = _torch_device(device)
    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[spec.kind]
    rnn = layer(VOCAB, spec.num_hiddens, spec.num_layers).to(where)
    linear = nn.Linear(spec.num_hiddens, VOCAB).to(where)
    parameters = [*rnn.parameters(), *linear.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    Xt, Yt = torch.from_numpy(X).to(where), torch.from_numpy(Y).to(where)
    shape = (spec.num_layers, BATCH, spec.num_hiddens)
    sync = _synchronizer(where)

    def step() -> None:
        state = torch.zeros(shape, device=where)
        if spec.kind == "lstm":
            state = (state, torch.zeros(shape, device=where))
        inputs = nn.functional.one_hot(Xt.T, VOCAB).float()  # (T, B, V)
        outputs, _ = rnn(inputs, state)
        logits = linear(outputs.reshape(-1, spec.num_hiddens))  # (T*B, V)
        loss = loss_fn(logits, Yt.T.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, THETA)
        optimizer.step()
        sync()

    return step


def torch_scratch_step(spec: ModelSpec, X: np.ndarray, Y: np.ndarray, device: str = "cpu") -> Step:
    """The book's RNNModelScratch, train_epoch_ch8 body, grad_clipping and sgd (d2l 8.5)."""
    import torch
    from torch.nn import functional

    where = _torch_device(device)
    start = init_params(spec, 0)
    layer = start["layers"][0]
    arrays = (layer["W_xh"], layer["W_hh"], layer["b_h"], start["W_hq"], start["b_q"])
    params = [torch.tensor(a, requires_grad=True, device=where) for a in arrays]
    Xt, Yt = torch.from_numpy(X).to(where), torch.from_numpy(Y).to(where)
    sync = _synchronizer(where)

    def rnn(inputs, H):
        W_xh, W_hh, b_h, W_hq, b_q = params
        outputs = []
        for X_t in inputs:
            H = torch.tanh(torch.mm(X_t, W_xh) + torch.mm(H, W_hh) + b_h)
            outputs.append(torch.mm(H, W_hq) + b_q)
        return torch.cat(outputs, dim=0), H

    def step() -> None:
        H = torch.zeros((BATCH, spec.num_hiddens), device=where)
        y_hat, _ = rnn(functional.one_hot(Xt.T, VOCAB).float(), H)
        loss = functional.cross_entropy(y_hat, Yt.T.reshape(-1)).mean()
        for param in params:
            param.grad = None
        loss.backward()
        norm = torch.sqrt(sum(torch.sum(param.grad**2) for param in params))
        if norm > THETA:
            for param in params:
                param.grad[:] *= THETA / norm
        with torch.no_grad():
            for param in params:
                param -= LR * param.grad / 1
        sync()

    return step


def make_steps(spec: ModelSpec, impls: list[str], device: str = "cpu") -> dict[str, Step]:
    """One step per implementation of ``impls`` on the bench's minibatch (seeded, fixed)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, VOCAB, (BATCH, STEPS))
    Y = rng.integers(0, VOCAB, (BATCH, STEPS))
    makers = {
        "numpy": lambda: numpy_step(spec, X, Y, device),
        "jax-bptt": lambda: jax_step(spec, X, Y, "bptt", device),
        "jax-autodiff": lambda: jax_step(spec, X, Y, "autodiff", device),
        "torch": lambda: torch_concise_step(spec, X, Y, device),
        "torch-scratch": lambda: torch_scratch_step(spec, X, Y, device),
    }
    scratch_ok = spec.kind == "rnn" and spec.num_layers == 1  # the book's scratch RNN only
    return {i: makers[i]() for i in impls if i != "torch-scratch" or scratch_ok}


def compile_times(spec: ModelSpec, grad_mode: str, device: str = "cpu") -> tuple[float, float]:
    """Seconds of the first jitted step, cold and warm: ``(cold, warm)``.

    Cold: with an empty persistent compilation cache (a temporary folder) and JAX's in-memory
    caches cleared, the first call of a new ``make_train_step``: tracing, lowering, XLA
    compilation, one step. Warm: the same again, the in-memory caches cleared once more, so that
    the compiled program comes from the persistent cache, as in a second run of a command.
    The persistent cache setting in force before the call is restored.
    """
    import tempfile
    import time

    import jax

    from experiments.run import runtime
    from rnn_jax import training

    before = jax.config.jax_compilation_cache_dir
    seconds = []
    try:
        with tempfile.TemporaryDirectory(prefix="rnn-lm-jax-cache-") as folder:
            runtime.enable_compile_cache(folder)
            for _ in ("cold", "warm"):
                jax.clear_caches()
                training.make_train_step.cache_clear()
                step = jax_step(spec, *_tokens(), grad_mode, device)
                start = time.perf_counter()
                step()
                seconds.append(time.perf_counter() - start)
    finally:
        if before:
            runtime.enable_compile_cache(before)
        else:
            runtime.disable_compile_cache()
        jax.clear_caches()
        training.make_train_step.cache_clear()
    return seconds[0], seconds[1]


def _tokens() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, VOCAB, (BATCH, STEPS)), rng.integers(0, VOCAB, (BATCH, STEPS))
