"""The loops every implementation shares: an epoch, a training run, an evaluation, a generation.

Letters: B batch, T steps, V vocabulary.

They know nothing about NumPy, JAX or PyTorch: each takes the compute as a function and threads a
``carry`` (the parameters, or parameters and optimiser state) and the recurrent state through it,
so ``numpy_ref``, ``rnn_jax`` and the PyTorch comparison run the very same loops.

One epoch, as the book's ``train_epoch_ch8`` (d2l 8.5.5)::

    for each minibatch (X, Y):
        state = begin_state(B)      on the first minibatch, or for every one under random iteration
        state = detach(state)       otherwise: carry the values, cut the gradient (truncated BPTT)
        carry, loss, state, grad_norm = step(carry, X, Y, state)
        total = total + loss * Y.size
        grad_norms.append(grad_norm)        the global norm before clipping (None: no gradient)

    perplexity = exp(total / number of tokens)
    tokens/s   = number of tokens / wall time of the epoch, data iteration included

``total`` is accumulated with ``+`` and ``*`` only and turned into a float once, at the end, so a
JAX step keeps dispatching asynchronously. Every epoch starts from the zero state.

Generation, as the book's ``predict_ch8`` (d2l 8.5.4), with the prefix's tokens
``p_0 ... p_{n-1}`` and the state starting at zero (batch 1)::

    outputs = [p_0]
    for k in 1 .. n-1:            warm-up: step on the previous token, keep the true one
        _, state = step(outputs[-1], state);  outputs.append(p_k)
    repeat num_preds times:       prediction: step on the last token, append the model's choice
        logits, state = step(outputs[-1], state);  outputs.append(argmax(logits))

so the first prefix token is fed from the zero state, and ``len(prefix) - 1 + num_preds`` steps run
in all. The choice is the argmax (greedy, the book's) or, given a temperature, a draw from
``softmax(logits / temperature)`` with an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpy_ref.checks import check_int, check_positive

Batch = tuple[np.ndarray, np.ndarray]
State = Any
Step = Callable[[Any, Any, Any, State], tuple[Any, Any, State, Any]]
LossStep = Callable[[Any, Any, State], tuple[Any, State]]
TokenStep = Callable[[int, State], tuple[Any, State]]


@dataclass(frozen=True)
class EpochStats:
    """What one pass over the data measured.

    Attributes:
        perplexity: ``exp`` of the mean cross-entropy per token over the epoch.
        tokens_per_sec: ``num_tokens / seconds``.
        num_tokens: targets seen in the epoch (the sum of ``Y.size``).
        seconds: wall time of the epoch, data iteration included.
        grad_norms: the global gradient norm of every minibatch before clipping (empty when the
            epoch computed no gradient, e.g. an evaluation).
    """

    perplexity: float
    tokens_per_sec: float
    num_tokens: int
    seconds: float
    grad_norms: tuple[float, ...] = ()

    def clipped_fraction(self, theta: float) -> float | None:
        """The fraction of minibatches whose gradient was clipped (norm above ``theta``)."""
        if not self.grad_norms:
            return None
        return sum(n > theta for n in self.grad_norms) / len(self.grad_norms)


def perplexity_of(total_loss: float, num_tokens: int) -> float:
    """``exp(total_loss / num_tokens)``, ``inf`` when that overflows a float."""
    try:
        return math.exp(total_loss / num_tokens)
    except OverflowError:
        return math.inf


def keep(state: State) -> State:
    """The ``detach`` of a state that carries no gradient history: the state itself.

    NumPy's backward stops at the minibatch's initial state by construction, and a JAX state
    passed between two jitted steps is a plain array: truncation is already what happens.
    """
    return state


def run_epoch(
    step: Step,
    carry: Any,
    loader: Iterable[Batch],
    begin_state: Callable[[int], State],
    use_random_iter: bool,
    *,
    detach: Callable[[State], State] = keep,
    sync: Callable[[Any], Any] | None = None,
) -> tuple[Any, EpochStats]:
    """One pass over ``loader`` with the book's state handling (module docstring).

    Args:
        step: ``step(carry, X, Y, state) -> (carry, loss, state, grad_norm)`` for one minibatch;
            ``X``, ``Y`` int (B, T); ``loss`` the mean cross-entropy (a float, or a 0-d array of
            any framework supporting ``loss * n`` and ``+``); ``grad_norm`` the gradient's global
            norm before clipping (read with ``float`` when the epoch ends), or None.
        carry: what ``step`` threads through the epoch (e.g. the parameters).
        loader: iterable of ``(X, Y)`` minibatches; iterated once.
        begin_state: ``begin_state(batch_size) -> state``, the zero state.
        use_random_iter: start every minibatch from the zero state (random sampling: neighbouring
            minibatches are not adjacent in the text) instead of carrying the state.
        detach: ``detach(state) -> state``, the same values without gradient history (PyTorch's
            ``Tensor.detach``; :func:`keep` where there is no history to cut).
        sync: called on the final carry before the clock stops, so that asynchronous work is
            timed (JAX: ``jax.block_until_ready``); ``None`` for synchronous code.

    Returns:
        The final carry and the epoch's :class:`EpochStats`.
    """
    start = time.perf_counter()
    state: State | None = None
    total: Any = 0.0
    num_tokens = 0
    norms = []
    for X, Y in loader:
        if state is None or use_random_iter:
            state = begin_state(X.shape[0])
        else:
            state = detach(state)
        carry, loss, state, grad_norm = step(carry, X, Y, state)
        total = total + loss * Y.size  # no float() here: keeps asynchronous dispatch
        num_tokens += int(Y.size)
        if grad_norm is not None:
            norms.append(grad_norm)
    if num_tokens == 0:
        raise ValueError(
            "the loader yielded no minibatch; use a longer corpus or a smaller batch_size/num_steps"
        )
    total = float(total)  # the one synchronisation point of the losses
    if sync is not None:
        sync(carry)
    seconds = time.perf_counter() - start
    stats = EpochStats(
        perplexity=perplexity_of(total, num_tokens),
        tokens_per_sec=num_tokens / seconds,
        num_tokens=num_tokens,
        seconds=seconds,
        grad_norms=tuple(float(n) for n in norms),
    )
    return carry, stats


def train_loop(
    epoch_fn: Callable[[Any], tuple[Any, EpochStats]],
    carry: Any,
    num_epochs: int,
    callback: Callable[[int, Any, EpochStats], Any] | None = None,
) -> tuple[Any, list[EpochStats]]:
    """Run ``epoch_fn`` ``num_epochs`` times, keeping the history and calling ``callback``.

    Args:
        epoch_fn: ``epoch_fn(carry) -> (carry, stats)``, one epoch.
        carry: the starting carry (e.g. the parameters).
        num_epochs: >= 0.
        callback: ``callback(epoch, carry, stats)`` after every epoch, ``epoch`` counted from 1.

    Returns:
        The final carry and the list of the epochs' stats.
    """
    check_int("num_epochs", num_epochs, minimum=0)
    history = []
    for epoch in range(1, num_epochs + 1):
        carry, stats = epoch_fn(carry)
        history.append(stats)
        if callback is not None:
            callback(epoch, carry, stats)
    return carry, history


def check_rates(lr: Any, theta: Any) -> None:
    """The learning rate and the clipping threshold of a training run: finite numbers > 0."""
    check_positive("lr", lr, " (the book uses 1; 2 for the deep RNN)")
    check_positive("theta", theta, " (the clipping threshold; the book uses 1)")


def evaluate(
    loss_step: LossStep,
    loader: Iterable[Batch],
    begin_state: Callable[[int], State],
    *,
    detach: Callable[[State], State] = keep,
) -> float:
    """Perplexity on ``loader``'s data, without updating anything.

    The state is carried from one minibatch to the next, as in sequential training; a loader
    with ``use_random_iter=True`` (non-adjacent minibatches) gets the zero state for each one.

    Args:
        loss_step: ``loss_step(X, Y, state) -> (loss, state)``, the mean cross-entropy of one
            minibatch.
        loader: iterable of int ``(X, Y)`` minibatches.
        begin_state: ``begin_state(batch_size) -> state``, the zero state.
        detach: as :func:`run_epoch`.

    Returns:
        ``exp`` of the mean cross-entropy per token.
    """

    def step(carry: None, X: Any, Y: Any, state: State) -> tuple[None, Any, State, None]:
        loss, state = loss_step(X, Y, state)
        return carry, loss, state, None

    use_random_iter = bool(getattr(loader, "use_random_iter", False))
    _, stats = run_epoch(step, None, loader, begin_state, use_random_iter, detach=detach)
    return float(stats.perplexity)


# --- generation ----------------------------------------------------------------------------------


def is_char_vocab(vocab: Any) -> bool:
    """True when every token but ``<unk>`` (index 0) is a single character."""
    return all(len(token) == 1 for token in vocab.idx_to_token[1:])


def tokens_of(prefix: str, vocab: Any) -> list[str]:
    """The tokens of ``prefix``: its characters for a char vocabulary, else its words."""
    return list(prefix) if is_char_vocab(vocab) else prefix.split()


def joined(prefix: str, generated: list[str], vocab: Any) -> str:
    """``prefix`` followed by the ``generated`` tokens, as :func:`generate` returns them."""
    if is_char_vocab(vocab):
        return prefix + "".join(generated)
    return " ".join(tokens_of(prefix, vocab) + generated)


def _choose(logits: Any, temperature: float | None, rng: np.random.Generator | None) -> int:
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)  # (V,)
    if temperature is None:
        return int(np.argmax(logits))  # the first maximum on ties
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())  # (V,), stable softmax
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def generate(
    prefix: str,
    num_preds: int,
    vocab: Any,
    step: TokenStep,
    state: State,
    temperature: float | None = None,
    rng: np.random.Generator | None = None,
) -> str:
    """Warm up on ``prefix``, then generate ``num_preds`` tokens (module docstring).

    Args:
        prefix: the text to continue, at least one token (characters for a char vocabulary,
            whitespace-separated words otherwise); unknown tokens become ``<unk>`` (index 0).
        num_preds: how many tokens to generate, >= 0.
        vocab: the :class:`numpy_ref.vocab.Vocab` of the model.
        step: ``step(token_index, state) -> (logits, state)``, one step of batch 1; ``logits``
            (V,) array-like.
        state: the initial state (the zero state of batch 1, as the book).
        temperature: None for greedy argmax; else > 0, sample from ``softmax(logits/temperature)``.
        rng: the generator of the samples; required when ``temperature`` is given.

    Returns:
        ``prefix`` followed by the generated tokens, joined with "" for a char vocabulary (the
        book's output for known characters; the book rebuilds the prefix from indices, which shows
        an unknown character as ``<unk>``) and with " " for a word vocabulary (prefix words
        included).
    """
    check_int("num_preds", num_preds, minimum=0)
    if temperature is not None:
        if not temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (or None for greedy argmax), got {temperature!r}"
            )
        if rng is None:
            raise ValueError("sampling with a temperature needs rng=numpy.random.default_rng(seed)")
    tokens = tokens_of(prefix, vocab)
    if not tokens:
        raise ValueError(f"prefix must hold at least one token to start from, got {prefix!r}")
    outputs = [vocab[tokens[0]]]
    for token in tokens[1:]:  # warm-up: the model reads the prefix, its outputs are ignored
        _, state = step(outputs[-1], state)
        outputs.append(vocab[token])
    generated = []
    for _ in range(num_preds):
        logits, state = step(outputs[-1], state)
        outputs.append(_choose(logits, temperature, rng))
        generated.append(vocab.to_tokens(outputs[-1]))
    return joined(prefix, generated, vocab)
