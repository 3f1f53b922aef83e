"""Generation: the book's warm-up, greedy and sampled continuations, unknown tokens, errors."""

from __future__ import annotations

import numpy as np
import pytest

from numpy_ref.generation import predict
from numpy_ref.loops import generate
from numpy_ref.models import forward
from numpy_ref.spec import ModelSpec, begin_state, init_params
from numpy_ref.vocab import Vocab

VOCAB = Vocab(list("abcd"))  # <unk>, a, b, c, d


class NextLetter:
    """A model with known logits: after token i it predicts i + 1 (d -> a); counts its steps."""

    def __init__(self, vocab=VOCAB):
        self.vocab = vocab
        self.calls = []  # (token fed, state received)

    def step(self, token, state):
        self.calls.append((token, state))
        logits = np.zeros(len(self.vocab))
        logits[token % (len(self.vocab) - 1) + 1] = 5.0
        return logits, state + 1


def test_warm_up_feeds_the_prefix_then_the_model_continues_from_its_last_token() -> None:
    model = NextLetter()
    out = generate("acd", 3, VOCAB, model.step, 0)
    a, c, d = VOCAB[["a", "c", "d"]]
    # warm-up: step on a (zero state), on c; then three predictions, each fed the last token
    assert [token for token, _ in model.calls] == [a, c, d, VOCAB["a"], VOCAB["b"]]
    assert [state for _, state in model.calls] == [0, 1, 2, 3, 4]  # the state is threaded
    assert out == "acd" + "abc"


def test_the_warm_up_ignores_the_models_outputs() -> None:
    # NextLetter would predict b after a; the warm-up keeps the true prefix letter instead
    assert generate("ad", 0, VOCAB, NextLetter().step, 0) == "ad"


def test_a_one_token_prefix_and_no_prediction_runs_no_step() -> None:
    model = NextLetter()
    assert generate("b", 0, VOCAB, model.step, 0) == "b"
    assert model.calls == []


def test_unknown_prefix_characters_are_fed_as_unk() -> None:
    model = NextLetter()
    out = generate("a?b", 1, VOCAB, model.step, 0)
    assert [token for token, _ in model.calls] == [VOCAB["a"], 0, VOCAB["b"]]
    assert out == "a?bc"


def test_word_vocabularies_are_joined_with_spaces() -> None:
    vocab = Vocab("the time machine by h g wells".split())
    model = NextLetter(vocab)
    out = generate("the  time", 2, vocab, model.step, 0)
    nxt = [vocab.to_tokens(vocab["time"] + 1), vocab.to_tokens(vocab["time"] + 2)]
    assert out == " ".join(["the", "time", *nxt])


def test_sampling_is_seeded_and_follows_softmax_of_logits_over_temperature() -> None:
    probs = np.array([0.0, 0.5, 0.3, 0.15, 0.05])
    logits = np.log(np.where(probs > 0, probs, 1e-300)) * 2.0  # temperature 2 undoes the * 2

    def step(token, state):
        return logits, state

    n = 4000
    out = generate("a", n, VOCAB, step, None, temperature=2.0, rng=np.random.default_rng(7))
    again = generate("a", n, VOCAB, step, None, temperature=2.0, rng=np.random.default_rng(7))
    assert out == again
    counts = np.array([out[1:].count(ch) for ch in "abcd"])
    # binomial counts: 5 standard deviations, sqrt(n p (1 - p)) <= 32
    np.testing.assert_allclose(counts, n * probs[1:], atol=5 * 32)


def test_a_tiny_temperature_is_the_argmax() -> None:
    model = NextLetter()
    rng = np.random.default_rng(0)
    assert generate("a", 4, VOCAB, model.step, 0, temperature=1e-3, rng=rng) == "abcda"


def test_bad_arguments_get_clear_errors() -> None:
    step = NextLetter().step
    with pytest.raises(ValueError, match="prefix must hold at least one token"):
        generate("", 3, VOCAB, step, 0)
    with pytest.raises(ValueError, match="num_preds must be an integer >= 0, got -1"):
        generate("a", -1, VOCAB, step, 0)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match=f"temperature must be > 0.*got {bad}"):
            generate("a", 3, VOCAB, step, 0, temperature=bad, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="needs rng=numpy.random.default_rng"):
        generate("a", 3, VOCAB, step, 0, temperature=1.0)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_predict_warms_up_like_one_forward_over_the_prefix(kind) -> None:
    spec = ModelSpec(kind, len(VOCAB), 6, num_layers=2)
    params = init_params(spec, seed=3, dtype=np.float64, sigma=1.0)
    out = predict("abdca", 1, spec, params, VOCAB)
    logits, _ = forward(spec, params, np.array([VOCAB[list("abdca")]]), begin_state(spec, 1, float))
    assert out == "abdca" + VOCAB.to_tokens(int(np.argmax(logits[-1, 0])))


def test_predict_samples_reproducibly_from_its_seed_and_checks_the_vocabulary() -> None:
    spec = ModelSpec("gru", len(VOCAB), 6)
    params = init_params(spec, seed=3, sigma=1.0)
    a = predict("ab", 30, spec, params, VOCAB, temperature=1.0, seed=1)
    assert a == predict("ab", 30, spec, params, VOCAB, temperature=1.0, seed=1)
    assert a != predict("ab", 30, spec, params, VOCAB, temperature=1.0, seed=2)
    with pytest.raises(ValueError, match="vocabulary has 5 tokens but the model's vocab_size is 9"):
        predict("ab", 3, ModelSpec("gru", 9, 6), init_params(ModelSpec("gru", 9, 6)), VOCAB)
