"""The experiment scripts: bad input ends with one line and exit code 2; tiny runs write every file.

Runs use tiny settings (a few hidden units, one or two epochs, 2,000 training tokens) so that the
whole file takes seconds; they still go through the real corpus, the real loaders and the real
implementations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import experiments
from experiments.analysis import table
from experiments.run import flags
from experiments.run.config import ConfigError, section_config
from experiments.run.rundir import CHECKPOINT, CONFIG, METRICS, PLOT, SUMMARY
from experiments.sections import command

pytestmark = pytest.mark.usefixtures("corpus_env")

TINY = ["--epochs", "2", "--hidden", "8", "--max-tokens", "2000"]
BOOK_LINE = re.compile(r"^perplexity \d+\.\d, \d+\.\d tokens/sec on cpu:0$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys: pytest.CaptureFixture[str], section: str, *argv: str) -> tuple[int, str, str]:
    code = command.main(section, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- bad input -------------------------------------------------------------------------------


def test_unknown_impl_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "rnn_scratch", "--impl", "mxnet", "--out", str(tmp_path))
    assert_one_error_line(code, err, "--impl", "mxnet", "numpy")
    assert out == ""


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--epochs", "0"),
        ("--epochs", "-3"),
        ("--hidden", "0"),
        ("--layers", "-1"),
        ("--lr", "0"),
        ("--lr", "-0.5"),
        ("--lr", "nan"),
        ("--batch-size", "0"),
        ("--num-steps", "0"),
        ("--theta", "0"),
        ("--epochs", "two"),
    ],
)
def test_non_positive_sizes_rates_and_epochs_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str
) -> None:
    code, _, err = run_cli(capsys, "lstm", flag, value, "--out", str(tmp_path / "run"))
    assert_one_error_line(code, err, flag, repr(value))
    assert not (tmp_path / "run").exists()


def test_torch_run_without_torch_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    for name in [m for m in sys.modules if m.startswith("experiments.torch_ref")]:
        monkeypatch.delitem(sys.modules, name)  # imported by an earlier test: import it anew
    monkeypatch.delattr(experiments, "torch_ref", raising=False)
    code, _, err = run_cli(capsys, "gru", "--impl", "torch", "--out", str(tmp_path / "run"))
    assert_one_error_line(code, err, "PyTorch is not installed", "pip install")
    assert not (tmp_path / "run").exists()


def test_out_below_a_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "rnn_concise", *TINY, "--out", str(blocker / "run"))
    assert_one_error_line(code, err, "--out", "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, "rnn_concise", *TINY, "--out", str(tmp_path / "run"))
    finally:
        tmp_path.chmod(0o700)
    assert_one_error_line(code, err, "--out", "not writable")


def test_existing_run_directory_needs_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert run_cli(capsys, "rnn_concise", *TINY, "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    before = (out / METRICS).read_text()
    code, _, err = run_cli(capsys, "rnn_concise", *TINY, "--out", str(out))
    assert_one_error_line(code, err, str(out), "--overwrite", "--resume")
    assert (out / METRICS).read_text() == before

    code, _, err = run_cli(
        capsys, "rnn_concise", *TINY, "--out", str(out), "--overwrite", "--seed", "3"
    )
    assert code == 0, err
    assert (out / METRICS).read_text() != before and len((out / METRICS).read_text().split()) > 1
    assert (out / "notes.txt").read_text() == "mine"  # only run files are replaced
    assert not (out / ".incoming").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text('{"my": "settings"}')
    (tmp_path / "summary.json").write_text("{}")
    code, _, err = run_cli(capsys, "gru", *TINY, "--out", str(tmp_path), "--overwrite")
    assert_one_error_line(code, err, "not a run directory of rnn-lm")
    assert (tmp_path / "config.json").read_text() == '{"my": "settings"}'


def test_concise_torch_model_refuses_the_books_gru(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys, "gru", "--impl", "torch", "--torch-model", "concise", "--out", str(tmp_path)
    )
    assert_one_error_line(code, err, "nn.GRU", "--torch-model scratch")


def test_numpy_on_a_gpu_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "lstm", "--device", "cuda", "--out", str(tmp_path))
    assert_one_error_line(code, err, "--device", "CPU only")


def test_the_entry_point_exits_2_with_one_line() -> None:
    """Through ``python -m``, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "experiments.deep_rnn", "--lr", "0"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "experiments.deep_rnn: error: argument --lr: must be a finite number > 0, or several "
        "separated by commas, got '0'"
    ]


def test_a_diverging_run_stops_with_exit_3_and_records_the_epoch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "rnn_concise", *TINY, "--lr", "1e30", "--out", str(tmp_path))
    assert code == 3
    (line,) = err.splitlines()
    assert line == (
        "experiments.rnn_concise: epoch 2 diverged: the training perplexity is inf, above "
        "--max-perplexity 112 (4 x the vocabulary size); the last good checkpoint (epoch 1) is "
        f"kept in {tmp_path}. Lower --lr (now 1e+30) or --theta (now 1)."
    )
    first, second = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert "diverged" not in first and second["diverged"] is True
    assert second["train_perplexity"] == "inf"  # strict JSON; null means "not measured"
    from numpy_ref.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / CHECKPOINT).epoch == 1


def test_the_numpy_impl_needs_neither_jax_nor_torch(tmp_path: Path) -> None:
    """torch and JAX are imported only by their backends (a second subprocess, ~2 s)."""
    code = (
        "import sys\n"
        "for name in ('torch', 'jax', 'jaxlib', 'optax'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "from experiments import bench, compare, table\n"
        "from experiments.sections import command\n"
        f"sys.exit(command.main('gru', {[*TINY, '--out', str(tmp_path)]!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / SUMMARY).is_file()


def test_python_api_raises_config_errors() -> None:
    with pytest.raises(ConfigError, match="--epochs"):
        section_config("gru", num_epochs=0)
    with pytest.raises(ConfigError, match="--impl"):
        section_config("gru", impl="mxnet")
    with pytest.raises(ConfigError, match="unknown section"):
        section_config("transformer")


# --- the book's defaults -----------------------------------------------------------------------


def test_sections_carry_the_books_settings() -> None:
    expected = {
        "rnn_scratch": ("rnn", 512, 1, 1.0, "scratch"),
        "rnn_concise": ("rnn", 256, 1, 1.0, "concise"),
        "gru": ("gru", 256, 1, 1.0, "scratch"),  # nn.GRU is the "after" variant
        "lstm": ("lstm", 256, 1, 1.0, "concise"),
        "deep_rnn": ("lstm", 256, 2, 2.0, "concise"),
    }
    for name, model in expected.items():
        c = section_config(name)
        assert (c.kind, c.num_hiddens, c.num_layers, c.lr, c.torch_model) == model
        assert (c.batch_size, c.num_steps, c.theta, c.num_epochs) == (32, 35, 1.0, 500)
        assert (c.max_tokens, c.gru_reset, c.impl) == (10_000, "before", "numpy")
    assert section_config("gru", gru_reset="after").torch_model == "concise"


def configs_of(section: str, argv: list[str]) -> list:
    args = flags.build_parser(section).parse_args(argv)
    return command.configs_from_args(section, args, "a command")[0]


def test_rnn_scratch_runs_both_iterations_by_default() -> None:
    configs = configs_of("rnn_scratch", ["--impl", "jax"])
    assert [(c.iter, c.out) for c in configs] == [
        ("seq", "runs/rnn_scratch-seq-jax"),
        ("random", "runs/rnn_scratch-random-jax"),
    ]
    assert [c.use_random_iter for c in configs] == [False, True]
    configs = configs_of("rnn_scratch", ["--out", "x", "--quick"])
    assert [(c.out, c.num_epochs) for c in configs] == [("x/seq", 10), ("x/random", 10)]
    (book,) = configs_of("rnn_scratch", ["--iter", "book-random"])
    assert (book.use_random_iter, book.loader_random) == (True, False)
    (gru,) = configs_of("gru", ["--impl", "torch"])
    assert gru.out == "runs/gru-torch"
    configs = configs_of("gru", ["--iter", "both"])
    assert [c.out for c in configs] == ["runs/gru-seq-numpy", "runs/gru-random-numpy"]


# --- end to end --------------------------------------------------------------------------------


def check_run_dir(out: Path, epochs: int, impl: str) -> dict:
    """Every file of a run directory exists and parses; returns the summary."""
    config = json.loads((out / CONFIG).read_text())
    assert config["impl"] == impl and config["num_epochs"] == epochs
    records = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for r in records:
        assert set(r) == {
            "epoch",
            "train_perplexity",
            "val_perplexity",
            "tokens_per_sec",
            "seconds",
            "grad_norm_median",
            "grad_norm_max",
            "clipped_fraction",
        }
        assert 0 < r["grad_norm_median"] <= r["grad_norm_max"]
        assert 0 <= r["clipped_fraction"] <= 1
        # An untrained model is near uniform over V = 28 tokens; two tiny epochs stay close.
        assert 1 < r["train_perplexity"] < 29
        # validated every --val-every (10) epochs and after the last, else null
        validated = r["epoch"] % config["val_every"] == 0 or r["epoch"] == epochs
        assert (r["val_perplexity"] is not None) == validated
        assert not validated or 1 < r["val_perplexity"] < 29
        assert r["tokens_per_sec"] > 0 and r["seconds"] > 0
    assert (out / PLOT).read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["impl"] == impl and summary["epochs"] == epochs
    assert summary["train_perplexity"] == records[-1]["train_perplexity"]
    assert summary["val_perplexity"] == records[-1]["val_perplexity"]
    for key in ("device", "machine", "versions", "date", "command", "predictions"):
        assert summary[key], key
    from numpy_ref.checkpoint import load_checkpoint

    assert load_checkpoint(out / CHECKPOINT) is not None
    return summary


@pytest.mark.parametrize("impl", ["numpy", "jax", "torch"])
def test_a_tiny_run_writes_every_file_and_prints_the_books_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, impl: str
) -> None:
    if impl == "torch":
        pytest.importorskip("torch", reason="PyTorch is an optional extra")
    out = tmp_path / impl
    code, stdout, err = run_cli(capsys, "rnn_concise", "--impl", impl, *TINY, "--out", str(out))
    assert code == 0, err
    assert err == ""  # the progress bar is quiet when stderr is not a terminal
    lines = stdout.splitlines()
    assert BOOK_LINE.match(lines[0]), lines[0]
    assert lines[1].startswith("time traveller") and len(lines[1]) == len("time traveller") + 50
    assert lines[2].startswith("traveller") and len(lines[2]) == len("traveller") + 50
    assert lines[-2].startswith("run directory") or lines[-1].startswith("run directory")
    assert any(line.startswith("validation perplexity ") for line in lines[3:])
    summary = check_run_dir(out, 2, impl)
    assert summary["book_line"] == lines[0]
    assert summary["predictions"] == {"time traveller": lines[1], "traveller": lines[2]}


def test_a_continuation_is_printed_every_ten_epochs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--epochs", "20", "--hidden", "4", "--max-tokens", "1200", "--val-fraction", "0"]
    code, stdout, err = run_cli(capsys, "gru", *argv, "--out", str(tmp_path))
    assert code == 0, err
    lines = stdout.splitlines()
    assert [line[:14] for line in lines[:2]] == ["time traveller"] * 2  # epochs 10 and 20
    assert BOOK_LINE.match(lines[2])
    assert not any(line.startswith("validation") for line in lines)


def test_both_iterations_write_two_run_directories(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, err = run_cli(capsys, "rnn_scratch", *TINY, "--out", str(tmp_path))
    assert code == 0, err
    for iter_ in ("seq", "random"):
        summary = check_run_dir(tmp_path / iter_, 2, "numpy")
        assert summary["iter"] == iter_
    assert stdout.count("tokens/sec on cpu:0") == 2


def test_table_collects_the_summaries(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(capsys, "rnn_scratch", *TINY, "--out", str(tmp_path / "a"))[0] == 0
    assert run_cli(capsys, "lstm", *TINY, "--out", str(tmp_path / "b"))[0] == 0
    (tmp_path / "c").mkdir()
    assert table.main([str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert rows[0].startswith("| section | impl | iter | lr, θ | runs | epochs | train ppl |")
    assert [r.split(" | ")[0:3] for r in rows[2:]] == [
        ["| 8.5 rnn_scratch", "numpy", "seq"],
        ["| 8.5 rnn_scratch", "numpy", "random"],
        ["| 9.2 lstm", "numpy", "seq"],
    ]
    assert "skipped 1 path" in captured.err

    assert table.main([str(tmp_path / "c")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_model_that_repeats_one_character_gets_a_note_saying_why() -> None:
    from experiments.run.runner import EpochRecord, RunResult

    config = section_config("lstm", num_epochs=10)
    result = RunResult(config, Path("x"), "cpu:0", [EpochRecord(1, 5.0, None, 1.0, 1.0)])
    result.predictions = {"time traveller": "time traveller" + " " * 50, "traveller": "traveller"}
    assert result.report_lines()[3] == (
        "(the model still predicts only ' ', the most frequent character after 1 epoch(s): "
        "a first look; the book trains 500)"
    )
    result.predictions["time traveller"] = "time traveller with a knowing smile"
    assert len(result.report_lines()) == 3


def test_best_validation_is_the_lowest_epoch_of_the_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / METRICS
    lines = [{"epoch": e, "val_perplexity": v} for e, v in ((1, 9.0), (2, 7.5), (3, 8.0))]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert table.best_validation(metrics) == (7.5, 2)
    assert table.best_validation(tmp_path / "missing.jsonl") is None
