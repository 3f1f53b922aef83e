"""``python -m experiments.gradient_flow``: ‖∂L/∂H_t‖ read from numpy_ref's BPTT, on tiny sizes.

What is asserted is what holds for any weights drawn at these scales, not a measured accident:

- at t = T only the step's own term reaches H_T, and the mean loss divides by T·B where the last
  step's divides by B: the two norms differ by exactly the factor T;
- for the last step's loss and the vanilla RNN, one step back is ``dH_(t-1) = (dH_t ⊙ (1 - H_t²))
  W_hh^T``, so ``‖dH_(t-1)‖ <= ‖W_hh‖₂ ‖dH_t‖`` (tanh' <= 1): the chain-rule bound of d2l 8.7;
- at the book's init (sigma 0.01, H = 8) that bound is ``‖W_hh‖₂ ≈ 2·0.01·√8 ≈ 0.06`` per step,
  while the LSTM's memory path keeps a factor F = sigmoid(~0) ≈ 1/2 per step: after T - 1 = 11
  steps the LSTM's gradient at t = 1 exceeds the RNN's by a factor of order (0.5 / 0.06)^11, far
  beyond anything the draw of the weights or of the minibatch changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.study import gradient_flow
from numpy_ref.checkpoint import save_checkpoint
from numpy_ref.spec import ModelSpec, init_params

pytestmark = pytest.mark.usefixtures("corpus_env")

T, B, H = 12, 2, 8
TINY = ["--steps", str(T), "--batch-size", str(B), "--hidden", str(H)]


@pytest.fixture(scope="module")
def book_init(corpus_file: Path) -> dict[str, gradient_flow.Flow]:
    X, Y, vocab = gradient_flow.minibatch(B, T, seed=0, path=str(corpus_file))
    flows = gradient_flow.flows_at_init(X, Y, len(vocab), H, gradient_flow.BOOK_SIGMA, seed=0)
    return {flow.label: flow for flow in flows}


def test_every_kind_has_a_norm_per_step(book_init) -> None:
    assert set(book_init) == {"rnn", "gru", "lstm"}
    for flow in book_init.values():
        assert flow.mean_loss.shape == flow.last_loss.shape == (T,)
        assert np.all(flow.mean_loss > 0) and np.all(flow.last_loss > 0)
        np.testing.assert_allclose(flow.last_loss[-1], T * flow.mean_loss[-1], rtol=1e-12)


def test_the_rnn_gradient_shrinks_by_at_most_the_norm_of_W_hh_per_step() -> None:
    X, Y, vocab = gradient_flow.minibatch(B, T, seed=0)
    for sigma in (0.01, 0.5):
        spec = ModelSpec("rnn", len(vocab), H)
        params = init_params(spec, 0, np.float64, sigma)
        flow = gradient_flow.hidden_gradient_norms(spec, params, X, Y)
        bound = np.linalg.norm(params["layers"][0]["W_hh"], 2)
        assert np.all(flow.last_loss[:-1] <= bound * flow.last_loss[1:] * (1 + 1e-12)), sigma


def test_at_the_books_init_the_lstm_keeps_more_gradient_at_step_one_than_the_rnn(book_init):
    rnn, lstm = book_init["rnn"].last_loss, book_init["lstm"].last_loss
    assert lstm[0] > 1e6 * rnn[0]
    assert book_init["gru"].last_loss[0] > 1e6 * rnn[0]  # the GRU's direct path: Z ≈ 1/2


def test_the_command_prints_the_table_and_writes_the_figure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "flow.png"
    assert gradient_flow.main([*TINY, "--every", "5", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"init σ = 0.01, H = {H}, B = {B}, T = {T}:"
    assert lines[2].split() == ["t", "rnn", "gru", "lstm", "rnn", "gru", "lstm"]
    assert [line.split()[0] for line in lines[3:7]] == ["12", "7", "2", "1"]
    assert any(line.startswith("init σ = 0.1,") for line in lines)


def test_the_figure_goes_under_runs_by_default(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert gradient_flow.main(TINY) == 0
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [
        Path("runs"),
        Path("runs/gradient_flow.png"),
    ]


def test_from_a_run_directory_reads_its_checkpoint(tmp_path: Path, capsys) -> None:
    _, _, vocab = gradient_flow.minibatch(B, T, seed=0)
    spec = ModelSpec("gru", len(vocab), H, num_layers=2)
    run = tmp_path / "gru-run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.npz", spec, init_params(spec, 1), vocab, epoch=3)
    out = tmp_path / "trained.png"
    assert gradient_flow.main([*TINY, "--from", str(run), "--out", str(out)]) == 0
    assert out.is_file()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"trained (--from), B = {B}, T = {T}:"
    assert lines[2].split() == ["t", "gru-run", "gru-run"]  # the run's name heads its columns


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--from", "no-such-run"], "no checkpoint at no-such-run"),
        (["--from", ".", "--scales", "0.1"], "give one or the other"),
        (["--scales", "-1"], "--scales"),
        (["--out", "no/such/folder/flow.png"], "the folder no/such/folder does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert gradient_flow.main([*TINY, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert fragment in captured.err
    assert not list(tmp_path.iterdir())  # nothing written
