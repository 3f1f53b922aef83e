"""The training loop: state handling, accumulation, timing, callbacks; and that training learns."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from conftest import VARIANT_IDS, VARIANTS

from numpy_ref.data import SeqDataLoader
from numpy_ref.generation import predict
from numpy_ref.loops import EpochStats, run_epoch, train_loop
from numpy_ref.models import forward_loss, loss_and_grads
from numpy_ref.optim import clip_by_global_norm, global_norm, sgd
from numpy_ref.spec import ModelSpec, begin_state, flatten_params, init_params
from numpy_ref.training import evaluate, train, train_epoch
from numpy_ref.vocab import Vocab

# --- the generic loop, with a recording step -------------------------------------------------


class Recorder:
    """A fake model: states are ints; records which state each minibatch started from."""

    def __init__(self, losses):
        self.losses = list(losses)
        self.log = []

    def begin_state(self, batch_size):
        self.log.append(("zeros", batch_size))
        return 0

    def detach(self, state):
        self.log.append(("detach", state))
        return state

    def step(self, carry, X, Y, state):
        self.log.append(("step", state))
        return carry + 1, self.losses.pop(0), state + 1, None


def batches(n, B=2, T=3):
    return [(np.zeros((B, T), np.int64), np.zeros((B, T), np.int64)) for _ in range(n)]


def test_sequential_epoch_zeroes_the_first_state_and_detaches_the_others() -> None:
    rec = Recorder([1.0, 2.0, 3.0])
    carry, stats = run_epoch(rec.step, 0, batches(3), rec.begin_state, False, detach=rec.detach)
    assert carry == 3
    assert rec.log == [
        ("zeros", 2),
        ("step", 0),
        ("detach", 1),
        ("step", 1),
        ("detach", 2),
        ("step", 2),
    ]
    assert stats.num_tokens == 18
    assert stats.perplexity == pytest.approx(math.exp(2.0), rel=1e-15)


def test_random_iteration_starts_every_minibatch_from_zeros() -> None:
    rec = Recorder([1.0, 2.0, 3.0])
    run_epoch(rec.step, 0, batches(3), rec.begin_state, True, detach=rec.detach)
    assert rec.log == [("zeros", 2), ("step", 0)] * 3


def test_perplexity_weights_each_minibatch_by_its_tokens() -> None:
    rec = Recorder([1.0, 4.0])
    data = [batches(1, B=1, T=2)[0], batches(1, B=2, T=3)[0]]  # 2 and 6 tokens
    _, stats = run_epoch(rec.step, 0, data, rec.begin_state, True, detach=rec.detach)
    assert stats.num_tokens == 8
    assert stats.perplexity == pytest.approx(math.exp((1.0 * 2 + 4.0 * 6) / 8), rel=1e-15)


class LazyLoss:
    """A loss that counts float() calls, as a JAX array would block on them."""

    conversions = 0

    def __init__(self, value):
        self.value = value

    def __mul__(self, n):
        return LazyLoss(self.value * n)

    def __radd__(self, other):
        return LazyLoss(other + self.value)

    def __add__(self, other):
        return LazyLoss(self.value + (other.value if isinstance(other, LazyLoss) else other))

    def __float__(self):
        LazyLoss.conversions += 1
        return float(self.value)


def test_losses_are_accumulated_without_a_float_per_step() -> None:
    LazyLoss.conversions = 0

    def step(carry, X, Y, state):
        return carry, LazyLoss(0.5), state, None

    _, stats = run_epoch(step, None, batches(5), lambda b: 0, False)
    assert LazyLoss.conversions == 1
    assert stats.perplexity == pytest.approx(math.exp(0.5), rel=1e-15)


def test_time_includes_data_iteration_and_the_sync_call() -> None:
    def slow_loader():
        for batch in batches(2):
            time.sleep(0.05)
            yield batch

    synced = []
    _, stats = run_epoch(
        lambda c, X, Y, s: (c, 1.0, s, None),
        "carry",
        slow_loader(),
        lambda b: 0,
        False,
        sync=synced.append,
    )
    assert synced == ["carry"]
    assert stats.seconds >= 0.1
    assert stats.tokens_per_sec == pytest.approx(stats.num_tokens / stats.seconds, rel=1e-15)


def test_an_empty_loader_is_an_error() -> None:
    with pytest.raises(ValueError, match="yielded no minibatch"):
        run_epoch(lambda c, X, Y, s: (c, 1.0, s, None), None, [], lambda b: 0, False)


def test_train_loop_counts_epochs_from_one_and_keeps_the_history() -> None:
    seen = []

    def epoch_fn(carry):
        return carry + 1, EpochStats(float(carry), 1.0, 1, 1.0)

    carry, history = train_loop(epoch_fn, 10, 3, lambda e, c, s: seen.append((e, c, s)))
    assert carry == 13
    assert [s.perplexity for s in history] == [10.0, 11.0, 12.0]
    assert seen == [(1, 11, history[0]), (2, 12, history[1]), (3, 13, history[2])]
    assert train_loop(epoch_fn, 10, 0) == (10, [])
    with pytest.raises(ValueError, match="num_epochs must be an integer >= 0, got -1"):
        train_loop(epoch_fn, 10, -1)


# --- the NumPy model under the loop ----------------------------------------------------------


def periodic_corpus(word="hello ", repeats=100):
    text = word * repeats
    vocab = Vocab(list(text))
    return np.array(vocab[list(text)], dtype=np.int64), vocab


def test_train_epoch_applies_bptt_clip_and_sgd_per_minibatch_with_the_state_carried() -> None:
    corpus, vocab = periodic_corpus()
    spec = ModelSpec("gru", len(vocab), 8)
    params = init_params(spec, seed=0, sigma=0.3)
    loader = SeqDataLoader(corpus, 4, 5, seed=3)
    updated, stats = train_epoch(spec, params, loader, lr=0.7, theta=0.5, use_random_iter=False)
    # the same epoch written out: the loader's next pass draws from the same seed
    expected, state, total, n, norms = params, begin_state(spec, 4), 0.0, 0, []
    for X, Y in SeqDataLoader(corpus, 4, 5, seed=3):
        loss, grads, state = loss_and_grads(spec, expected, X, Y, state)
        norms.append(global_norm(grads))
        expected = sgd(expected, clip_by_global_norm(grads, 0.5), 0.7)
        total, n = total + loss * Y.size, n + Y.size
    for key, value in flatten_params(expected).items():
        assert np.array_equal(flatten_params(updated)[key], value), key
    assert stats.perplexity == math.exp(total / n)
    assert stats.grad_norms == tuple(norms) and len(norms) == len(list(loader))
    assert stats.clipped_fraction(0.5) == sum(n > 0.5 for n in norms) / len(norms)
    assert stats.num_tokens == n


def test_train_starts_every_epoch_from_the_zero_state_and_reports_each_epoch() -> None:
    corpus, vocab = periodic_corpus()
    spec = ModelSpec("rnn", len(vocab), 8)
    params = init_params(spec, seed=0)
    seen = []
    final, history = train(
        spec,
        params,
        SeqDataLoader(corpus, 4, 5, seed=1),
        vocab,
        1.0,
        1.0,
        2,
        False,
        callback=lambda epoch, p, stats: seen.append((epoch, p, stats)),
    )
    assert [e for e, _, _ in seen] == [1, 2] and [s for _, _, s in seen] == history
    assert seen[-1][1] is final
    # epoch 2 equals a fresh train_epoch from epoch 1's parameters: nothing carried over
    loader = SeqDataLoader(corpus, 4, 5, seed=1)
    p1, s1 = train_epoch(spec, params, loader, 1.0, 1.0, False)
    p2, s2 = train_epoch(spec, p1, loader, 1.0, 1.0, False)
    assert s1.perplexity == history[0].perplexity and s2.perplexity == history[1].perplexity
    assert all(
        np.array_equal(a, b)
        for a, b in zip(*(flatten_params(p).values() for p in (p2, final)), strict=True)
    )


def test_train_rejects_a_vocabulary_of_another_size() -> None:
    corpus, vocab = periodic_corpus()
    spec = ModelSpec("rnn", len(vocab) + 1, 4)
    with pytest.raises(ValueError, match="vocabulary has 6 tokens but the model's vocab_size is 7"):
        train(spec, init_params(spec), SeqDataLoader(corpus, 2, 3), vocab, 1.0, 1.0, 1, False)


def test_evaluate_carries_the_state_and_updates_nothing() -> None:
    corpus, vocab = periodic_corpus()
    spec = ModelSpec("lstm", len(vocab), 6)
    params = init_params(spec, seed=0, sigma=0.5)
    ppl = evaluate(spec, params, SeqDataLoader(corpus, 3, 4, seed=5))
    state, total, n = begin_state(spec, 3), 0.0, 0
    for X, Y in SeqDataLoader(corpus, 3, 4, seed=5):
        loss, state = forward_loss(spec, params, X, Y, state)
        total, n = total + loss * Y.size, n + Y.size
    assert ppl == math.exp(total / n)


@pytest.mark.parametrize("kind, reset", VARIANTS, ids=VARIANT_IDS)
def test_each_kind_learns_a_repeated_word_and_continues_it(kind, reset) -> None:
    """'hello ' needs memory: after 'l' comes 'l' or 'o' depending on the letter before.

    The book's setup at toy size: float32, weights N(0, 0.01^2), theta = 1, sequential batches;
    20 epochs of 24 minibatches (480 SGD steps), lr 2, H = 16.
    """
    corpus, vocab = periodic_corpus()
    spec = ModelSpec(kind, len(vocab), 16, gru_reset=reset)
    loader = SeqDataLoader(corpus, 4, 6, seed=0)
    params, history = train(spec, init_params(spec, seed=0), loader, vocab, 2.0, 1.0, 20, False)
    assert history[0].perplexity > 2.5
    assert history[-1].perplexity < 1.1
    assert predict("he", 15, spec, params, vocab) == "hello hello hello"
    assert predict("hel", 8, spec, params, vocab) == "hello hello"


@pytest.mark.parametrize("lr", [float("nan"), -1.0, 0.0, float("inf")])
def test_train_rejects_a_learning_rate_that_is_not_a_finite_positive_number(lr) -> None:
    corpus, vocab = periodic_corpus()
    spec = ModelSpec("rnn", len(vocab), 4)
    loader = SeqDataLoader(corpus, 2, 3)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train(spec, init_params(spec), loader, vocab, lr, 1.0, 1, False)
    with pytest.raises(ValueError, match="theta must be a finite number > 0"):
        train_epoch(spec, init_params(spec), loader, 1.0, lr, False)
