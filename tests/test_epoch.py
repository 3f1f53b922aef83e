"""The epoch as one compiled program (rnn_jax.epoch) computes what the per-step loop computes, and
the greedy continuation of many prefixes in one call is the book's loop of each prefix.

Tolerances. Float64: the program runs the very step of the per-step loop in the same order
(measured: parameters bit-identical after 5 epochs; the perplexities differ in the last bits
because the loop accumulates ``loss * n`` on the device and the program sums the losses in
float64 on the host): 1e-12 relative leaves a factor of ~1000 over float64's 2e-16 for the
~100 operations of one perplexity. Float32: the first epoch's perplexity, the same sums in
float32 (6e-8 per operation) over ~10 minibatches: 1e-5, the bound the issue sets.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import CASE_IDS, CASES, VARIANT_IDS, VARIANTS, rel_diff, spec_of

import rnn_jax
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine
from numpy_ref.population import max_batches
from numpy_ref.spec import ModelSpec, init_params
from numpy_ref.vocab import Vocab
from rnn_jax import epoch

B, T = 8, 10

pytestmark = pytest.mark.usefixtures("corpus_env")


def per_step_and_program(spec, corpus, dtype, random, epochs, chunk, seed=3):
    """``epochs`` of the per-step loop and of the program from one start: their stats and
    final parameters."""
    start = init_params(spec, seed, dtype, sigma=0.1)
    single = rnn_jax.to_jax(start, "cpu")
    members = epoch.Members.create(spec, [start], [(1.0, 1.0)])
    loop_loader, program_loader = (SeqDataLoader(corpus, B, T, random, 5) for _ in range(2))
    steps = max_batches(len(corpus), B, T, random)
    loop, program = [], []
    for _ in range(epochs):
        single, stats = rnn_jax.train_epoch(spec, single, loop_loader, 1.0, 1.0, random)
        loop.append(stats)
        program.extend(
            epoch.train_epoch(members, [program_loader], random, (B, T), steps, chunk=chunk)
        )
    return loop, program, jax.tree.map(np.asarray, single), members.to_numpy()[0]


@pytest.mark.parametrize(("kind", "reset", "layers"), CASES, ids=CASE_IDS)
def test_the_epoch_program_is_the_per_step_loop_float64(x64, kind, reset, layers) -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = spec_of(kind, reset, len(vocab), 8, layers)
    for random, chunk in ((False, 7), (True, epoch.CHUNK)):  # several calls an epoch; the run's
        loop, program, params, trained = per_step_and_program(
            spec, corpus, np.float64, random, 5, chunk
        )
        for a, b in zip(loop, program, strict=True):
            assert a.num_tokens == b.num_tokens
            assert abs(a.perplexity - b.perplexity) < 1e-12 * a.perplexity
            np.testing.assert_allclose(b.grad_norms, a.grad_norms, rtol=1e-12, atol=0)
        assert loop[0].perplexity != loop[-1].perplexity  # it trained
        assert rel_diff(params, trained) < 1e-12


def test_the_first_epoch_in_float32_is_the_per_step_loops_to_1e_5() -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=4000)
    for kind, reset in VARIANTS:
        spec = spec_of(kind, reset, len(vocab), 32)
        loop, program, _, _ = per_step_and_program(spec, corpus, np.float32, False, 1, epoch.CHUNK)
        assert abs(loop[0].perplexity - program[0].perplexity) < 1e-5 * loop[0].perplexity, kind


def test_a_stop_between_chunks_keeps_the_last_complete_epoch() -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("gru", len(vocab), 8)
    members = epoch.Members.create(spec, [init_params(spec, 0, np.float32)], [(1.0, 1.0)])
    loader = SeqDataLoader(corpus, B, T, False, 0)
    steps = max_batches(len(corpus), B, T, False)
    epoch.train_epoch(members, [loader], False, (B, T), steps, chunk=4)
    after_one = members.to_numpy()[0]
    polls = iter([False, False, True])  # two chunks run, then the stop
    with pytest.raises(epoch.Stopped):
        epoch.train_epoch(
            members, [loader], False, (B, T), steps, chunk=4, stop=lambda: next(polls)
        )
    assert rel_diff(after_one, members.to_numpy()[0]) == 0.0


@pytest.mark.parametrize(
    ("steps", "chunk"), [(1, 32), (9, 32), (32, 32), (33, 32), (100, 32), (1000, 7)]
)
def test_a_chunk_plan_covers_the_epoch_with_less_than_one_call_of_padding(steps, chunk) -> None:
    count, length = epoch.chunk_plan(steps, chunk)
    assert length <= chunk and count * length >= steps
    assert count * length - steps < count  # evenly split: under one minibatch per call


def test_validation_is_the_per_step_evaluation(x64) -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("lstm", len(vocab), 8, 2)
    params = [init_params(spec, seed, np.float64, sigma=0.1) for seed in (0, 1)]
    members = epoch.Members.create(spec, params, [(1.0, 1.0)] * 2)
    steps = max_batches(len(corpus), B, T, False)
    loaders = [SeqDataLoader(corpus, B, T, False, seed) for seed in (0, 1)]
    got = epoch.evaluate(members, loaders, (B, T), steps, chunk=5)
    for p, ppl, seed in zip(params, got, (0, 1), strict=True):
        want = rnn_jax.evaluate(
            spec, rnn_jax.to_jax(p, "cpu"), SeqDataLoader(corpus, B, T, False, seed)
        )
        assert abs(ppl - want) < 1e-12 * want


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_greedy_continuations_of_many_prefixes_and_members_are_the_books_loop(
    x64, kind, reset
) -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=3000)
    spec = spec_of(kind, reset, len(vocab), 16, 2)
    params = [init_params(spec, seed, np.float64, sigma=0.5) for seed in (0, 1)]
    prefixes = ["time traveller", "t", "traveller", "zq?"]  # "?" is not in the vocabulary
    stacked = epoch.Members.create(spec, params, [(1.0, 1.0)] * 2).params  # packed
    got = rnn_jax.generation.predict_greedy(prefixes, 30, spec, stacked, vocab)
    for member, p in zip(got, params, strict=True):
        want = [rnn_jax.predict(x, 30, spec, rnn_jax.to_jax(p, "cpu"), vocab) for x in prefixes]
        assert member == want
    assert len({text[len(x) :] for x, text in zip(prefixes, got[0], strict=True)}) > 1


def test_greedy_continuations_of_a_word_vocabulary() -> None:
    vocab = Vocab("the time machine by h g wells the time traveller".split())
    spec = ModelSpec("rnn", len(vocab), 8)
    params = init_params(spec, 0, np.float32, sigma=1.0)
    stacked = epoch.Members.create(spec, [params], [(1.0, 1.0)]).params
    prefixes = ["the time", "traveller", "unknown words here"]
    (got,) = rnn_jax.generation.predict_greedy(prefixes, 5, spec, stacked, vocab)
    assert got == [
        rnn_jax.predict(x, 5, spec, rnn_jax.to_jax(params, "cpu"), vocab) for x in prefixes
    ]
    assert rnn_jax.generation.predict_greedy(["time"], 0, spec, stacked, vocab) == [["time"]]
