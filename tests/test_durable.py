"""Durable runs: checkpoints while training, bit-identical resume, safe overwrite, divergence,
signals, write errors.

The subprocess tests run the command as a user does (``python -m experiments.gru ...``), kill or
signal it, and resume it in this process; the resumed run must end with the parameters and
per-epoch perplexities of an uninterrupted run, bit for bit (same code, same CPU: every epoch is
a deterministic function of the checkpoint's parameters and generator state). The runs are small
(16 hidden units, 3,000 training characters, 20 epochs) so that the file takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.run import loop, runner
from experiments.run.config import section_config
from experiments.run.rundir import CHECKPOINT, CONFIG, METRICS, STAGING, SUMMARY
from experiments.sections import command
from numpy_ref.checkpoint import load_checkpoint
from numpy_ref.spec import flatten_params

ROOT = Path(__file__).resolve().parents[1]
RUN = "--epochs 20 --hidden 16 --max-tokens 3000 --val-fraction 0.03 --checkpoint-every 3".split()
TINY = ["--epochs", "2", "--hidden", "8", "--max-tokens", "2000"]

pytestmark = pytest.mark.usefixtures("corpus_env")


def run_main(capsys, *argv: str, section: str = "gru") -> tuple[int, str]:
    code = command.main(section, list(argv))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus_file) -> dict[str, Path]:
    """The uninterrupted runs, one per implementation, made on first use."""
    made: dict[str, Path] = {}

    def make(impl: str) -> Path:
        if impl not in made:
            out = tmp_path_factory.mktemp(f"reference-{impl}")
            env = {"RNN_LM_DATA_DIR": str(corpus_file.parent)}
            with pytest.MonkeyPatch.context() as mp:
                for key, value in env.items():
                    mp.setenv(key, value)
                assert command.main("gru", [*RUN, "--impl", impl, "--out", str(out / "run")]) == 0
            made[impl] = out / "run"
        return made[impl]

    return make


def spawn(impl: str, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "experiments.gru", *RUN, "--impl", impl, "--out", str(out)]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out / CHECKPOINT).exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def assert_same_run(run: Path, reference: Path) -> None:
    """Final parameters bit-identical; every epoch once, with identical perplexities."""
    ours, theirs = load_checkpoint(run / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    assert ours.epoch == theirs.epoch == 20
    for key, value in flatten_params(theirs.params).items():
        assert np.array_equal(flatten_params(ours.params)[key], value), key
    mine = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    ref = [json.loads(line) for line in (reference / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in mine] == list(range(1, 21))
    for key in ("train_perplexity", "val_perplexity"):
        assert [r[key] for r in mine] == [r[key] for r in ref], key
    assert (run / SUMMARY).is_file() and not (run / STAGING).exists()


@pytest.mark.parametrize("impl", ["numpy", "jax"])
def test_a_run_killed_at_a_random_moment_resumes_bit_identically(
    impl, tmp_path, reference, capsys
) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    delay = random.Random(seed).uniform(0.0, 0.8)
    out = tmp_path / "run"
    proc = spawn(impl, out)
    wait_for_checkpoint(proc, out)
    time.sleep(delay)
    proc.kill()
    assert proc.wait() in (-signal.SIGKILL, 0), f"seed {seed}"
    if proc.returncode == -signal.SIGKILL:  # (0: it finished within the delay)
        saved = load_checkpoint(out / CHECKPOINT)
        code, err = run_main(capsys, "--resume", str(out))
        assert code == 0, f"{err} (seed {seed}, killed after epoch {saved.epoch})"
        # the run's record of its resumes (a run killed after its last checkpoint, before its
        # summary, resumes only to finish: its checkpoint is not rewritten)
        assert json.loads((out / SUMMARY).read_text())["resumed_at"] == [saved.epoch]
    assert_same_run(out, reference(impl))


@pytest.mark.parametrize(("impl", "signum"), [("numpy", signal.SIGINT), ("jax", signal.SIGTERM)])
def test_a_signal_saves_the_last_epoch_says_how_to_resume_and_the_resume_is_exact(
    impl, signum, tmp_path, reference, capsys
) -> None:
    out = tmp_path / "run"
    proc = spawn(impl, out)
    wait_for_checkpoint(proc, out)
    time.sleep(0.2)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signum, err
    (line,) = err.splitlines()
    saved = load_checkpoint(out / CHECKPOINT)
    assert line == (
        f"experiments.gru: {signal.Signals(signum).name}: interrupted during epoch "
        f"{saved.epoch + 1} of 20: epoch {saved.epoch} is saved in {out / CHECKPOINT}; "
        f"resume with: python -m experiments.gru --resume {out}"
    )
    assert len((out / METRICS).read_text().splitlines()) == saved.epoch
    assert run_main(capsys, "--resume", str(out))[0] == 0
    assert_same_run(out, reference(impl))


def test_an_interrupt_during_start_up_is_one_line_and_exit_130(tmp_path) -> None:
    """SIGINT while JAX is being imported or compiled: no traceback, no abort, nothing written."""
    out = str(tmp_path / "run")
    command = [sys.executable, "-m", "experiments.gru", *TINY, "--impl", "jax", "--out", out]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert err.splitlines() == ["experiments.gru: SIGINT during start-up: nothing was written"]
    assert not (tmp_path / "run").exists()


def test_a_write_error_is_one_line_exit_1_and_the_checkpoint_survives(tmp_path) -> None:
    """``ulimit -f 20``: files over 20 KiB cannot be written (a checkpoint or a plot, later)."""
    out = tmp_path / "run"
    command = (
        f"ulimit -f 20; exec {sys.executable} -m experiments.gru --epochs 12 --hidden 8 "
        f"--max-tokens 2000 --out {out}"
    )
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    prefix = f"experiments.gru: could not write the run's files in {out}: File too large (epoch "
    assert line.startswith(prefix) and line.endswith(f" is saved in {out / CHECKPOINT})"), line
    saved = int(line[len(prefix) :].split()[0])
    assert saved >= 1 and load_checkpoint(out / CHECKPOINT).epoch == saved  # intact
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # nothing half-written


# --- in this process --------------------------------------------------------------------------


def test_overwrite_keeps_the_previous_result_until_the_new_run_has_a_checkpoint(
    tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--out", str(out))[0] == 0
    before = {name: (out / name).read_bytes() for name in (CONFIG, METRICS, CHECKPOINT, SUMMARY)}

    config = section_config(
        "gru", num_epochs=2, num_hiddens=8, max_tokens=2000, out=str(out), overwrite=True, seed=1
    )
    with pytest.raises(loop.RunInterrupted, match="the earlier result there is kept"):
        runner.run_experiment(config, stop=lambda: True)  # stopped in its first minibatch
    code, err = run_main(capsys, *TINY, "--out", str(out), "--overwrite", "--max-perplexity", "1")
    assert code == 3 and f"the earlier result in {out} is kept" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / STAGING).exists()

    assert run_main(capsys, *TINY, "--out", str(out), "--overwrite", "--seed", "1")[0] == 0
    assert (out / CHECKPOINT).read_bytes() != before[CHECKPOINT]
    assert json.loads((out / CONFIG).read_text())["seed"] == 1


def test_a_resume_drops_the_records_after_its_checkpoint_and_a_torn_last_line(
    tmp_path, capsys
) -> None:
    """metrics.jsonl is appended a line per epoch; the checkpoint says what is valid."""
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--out", str(out))[0] == 0
    lines = (out / METRICS).read_text().splitlines()
    with open(out / METRICS, "a", encoding="utf-8") as f:  # as if epoch 3 ran, then kill -9
        f.write(lines[-1].replace('"epoch": 2', '"epoch": 3') + "\n" + lines[-1][:25])
    assert run_main(capsys, "--resume", str(out), "--epochs", "4")[0] == 0
    records = [json.loads(r) for r in (out / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[:2] == [json.loads(r) for r in lines]
    assert records[2]["train_perplexity"] != records[1]["train_perplexity"]  # trained anew


def test_resume_continues_to_more_epochs_and_refuses_what_it_cannot_do(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--out", str(out))[0] == 0
    code, err = run_main(capsys, "--resume", str(out))
    assert code == 2 and "has done 2 of its 2 epochs: nothing to resume" in err
    code, err = run_main(capsys, "--resume", str(out), "--hidden", "9", "--epochs", "3")
    assert code == 2 and "num_hiddens 9 conflicts with the run's num_hiddens 8" in err
    code, err = run_main(capsys, "--resume", str(out), section="lstm")
    assert code == 2 and f"python -m experiments.gru --resume {out}" in err
    assert run_main(capsys, "--resume", str(out), "--epochs", "3")[0] == 0
    assert [json.loads(r)["epoch"] for r in (out / METRICS).read_text().splitlines()] == [1, 2, 3]
    assert load_checkpoint(out / CHECKPOINT).epoch == 3


# --- bad input: one line, exit 2, no traceback, nothing written ----------------------------------


def _file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _offline(tmp_path: Path, monkeypatch) -> None:
    """No $RNN_LM_DATA_DIR, an empty cache, and a network that fails."""
    import urllib.error

    from numpy_ref import corpus

    monkeypatch.delenv("RNN_LM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url: str, timeout: float = 30.0) -> bytes:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(corpus, "_fetch", no_network)


def _random_checkpoint(tmp_path: Path) -> str:
    run = tmp_path / "damaged"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(os.urandom(3000))
    return str(run)


BAD_INPUT = {  # name: (command, argv builder, words the line must hold)
    "empty file": ("gru", lambda t, m: ["--data", _file(t, "e.txt", b"")], ["e.txt"]),
    "NUL bytes": ("gru", lambda t, m: ["--data", _file(t, "n.txt", b"\0" * 5000)], ["n.txt"]),
    "executable": (
        "gru",
        lambda t, m: ["--data", _file(t, "ls", Path("/bin/ls").read_bytes())],
        ["ls"],
    ),
    "not UTF-8": (
        "gru",
        lambda t, m: ["--data", _file(t, "l.txt", "café\n".encode("latin-1") * 500)],
        ["l.txt", "UTF-8"],
    ),
    "a folder": ("gru", lambda t, m: ["--data", str(t)], ["directory"]),
    "missing file": ("gru", lambda t, m: ["--data", str(t / "nope.txt")], ["nope.txt"]),
    "too short": (
        "gru",
        lambda t, m: ["--data", _file(t, "s.txt", b"hello world\n" * 40)],
        ["s.txt", "tokens"],
    ),
    "offline": ("gru", lambda t, m: _offline(t, m) or [], ["--data"]),
    "data dir without the file": (
        "gru",
        lambda t, m: m.setenv("RNN_LM_DATA_DIR", str(t)) or [],
        ["RNN_LM_DATA_DIR"],
    ),
    "hidden 100000000": ("gru", lambda t, m: ["--hidden", "100000000"], ["GiB", "--hidden"]),
    "resume nothing": ("gru", lambda t, m: ["--resume", str(t / "none")], ["nothing to resume"]),
    "resume random bytes": (
        "gru",
        lambda t, m: ["--resume", _random_checkpoint(t)],
        ["not a readable checkpoint"],
    ),
    "compare empty file": (
        "compare",
        lambda t, m: ["--impls", "numpy", "--data", _file(t, "e.txt", b"")],
        ["e.txt"],
    ),
    "compare not UTF-8": (
        "compare",
        lambda t, m: ["--impls", "numpy", "--data", _file(t, "l.txt", b"\xff\xfe" * 900)],
        ["UTF-8"],
    ),
    "corpus_stats offline": ("corpus_stats", lambda t, m: _offline(t, m) or [], ["--data"]),
    "corpus_stats missing": ("corpus_stats", lambda t, m: ["--data", str(t / "x.txt")], ["x.txt"]),
    "corpus_stats empty": (
        "corpus_stats",
        lambda t, m: ["--data", _file(t, "e.txt", b"")],
        ["e.txt"],
    ),
    "corpus_stats batch 0": ("corpus_stats", lambda t, m: ["--batch-size", "0"], ["--batch-size"]),
    "bench json": (
        "bench",
        lambda t, m: ["--configs", "rnn", "--json", str(t / "no/b.json")],
        ["--json"],
    ),
    "bench offline": (
        "bench",
        lambda t, m: _offline(t, m) or ["--configs", "rnn"],
        ["--corpus-mb 0"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_every_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys) -> None:
    import importlib

    command, build, words = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path, monkeypatch)
    if command in ("gru", "compare"):
        argv = [*TINY, "--out", str(tmp_path / "out"), *argv]  # the case's flags win
    code = importlib.import_module(f"experiments.{command}").main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith(f"experiments.{command}: error: ") and "Traceback" not in line
    assert "allow_pickle" not in line
    for word in words:
        assert word in line, line
    assert not (tmp_path / "out").exists() and captured.out == ""


def test_table_names_a_damaged_run_skips_it_and_goes_on(tmp_path, capsys) -> None:
    from experiments.analysis import table

    for name in ("good", "bad"):
        assert run_main(capsys, *TINY, "--out", str(tmp_path / name))[0] == 0
    (tmp_path / "bad" / METRICS).write_text('{"epoch": 1, "val_perplexity": 3}\n{"epo')
    assert table.main([str(tmp_path / "good"), str(tmp_path / "bad")]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3  # header, rule, the good run
    (line,) = captured.err.splitlines()
    assert str(tmp_path / "bad" / METRICS) in line and "line 2 is not JSON" in line


def test_any_unicode_text_trains_or_fails_with_one_line(tmp_path_factory, capsys) -> None:
    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(st.text(max_size=120).map(lambda s: s.replace("\n", "\r\n")))
    @example("abcdefghij")  # exactly one minibatch of 2 x 3 with the largest offset
    @example("12 34 !!! \r\n\r\n")  # no letters at all
    @example("Ab\r\ncD\u2028eF gh IJ\x85kl")
    def run(text: str) -> None:
        folder = tmp_path_factory.mktemp("text")
        data = folder / "text.txt"
        data.write_text(text, encoding="utf-8", newline="")
        tiny = "--epochs 1 --hidden 4 --batch-size 2 --num-steps 3 --val-fraction 0".split()
        argv = ["--data", str(data), *tiny, "--out", str(folder / "run")]
        code = command.main("gru", argv)
        captured = capsys.readouterr()
        assert code in (0, 2), captured.err
        if code == 2:
            assert len(captured.err.splitlines()) == 1 and not (folder / "run").exists()
        else:
            assert (folder / "run" / CHECKPOINT).is_file()

    run()
