"""Run directories as transactions, populations as durable as runs (issue 20, items 1-4, 10, 11,
14-18, 20).

Each test names the defect it guards against; the runs are tiny (8 hidden units, 2,000 training
characters, a few epochs) so that the file takes seconds. The tests that need two processes at
once (locks) or ``kill -9`` run the command in subprocesses with timeouts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.analysis import table
from experiments.run.rundir import CHECKPOINT, CONFIG, LOCK, POPULATION, SUMMARY
from experiments.sections import command
from numpy_ref.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--max-tokens", "2000"]
MEMBERS = ("seed0-lr1-theta1", "seed1-lr1-theta1")

pytestmark = pytest.mark.usefixtures("corpus_env")


def run_main(capsys, *argv: str, section: str = "gru") -> tuple[int, str]:
    code = command.main(section, list(argv))
    return code, capsys.readouterr().err


def one_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def epochs_of(folder: Path) -> int:
    return load_checkpoint(folder / CHECKPOINT).epoch


# --- item 1: populations resume to the --epochs asked ------------------------------------------


@pytest.mark.parametrize("impl", ["numpy", "jax"])
def test_a_population_resumes_every_member_to_the_epochs_asked(impl, tmp_path, capsys) -> None:
    from experiments.populations import population
    from experiments.populations.runner import run_population
    from experiments.run import flags
    from experiments.run.loop import RunInterrupted

    out = tmp_path / "pop"
    argv = [*TINY, "--epochs", "4", "--impl", impl, "--seeds", "0-1", "--checkpoint-every", "2",
            "--out", str(out)]  # fmt: skip
    args = flags.build_parser("gru").parse_args(argv)
    (config,), _ = command.configs_from_args("gru", args, "cmd")
    # numpy: seed 0 finished, seed 1 stopped after its first checkpoint; jax: after epoch 1
    saved = out / {"numpy": MEMBERS[1] + "/" + CHECKPOINT, "jax": "population.0.npz"}[impl]
    with pytest.raises(RunInterrupted):
        run_population(config, population.start(config, False), stop=saved.exists)
    assert epochs_of(out / MEMBERS[0]) == {"numpy": 4, "jax": 1}[impl]

    code, err = run_main(capsys, "--resume", str(out), "--epochs", "5")
    assert code == 0, err
    assert [epochs_of(out / m) for m in MEMBERS] == [5, 5]
    assert json.loads((out / POPULATION).read_text())["config"]["num_epochs"] == 5
    assert json.loads((out / SUMMARY).read_text())["epochs"] == 5

    code, err = run_main(capsys, "--resume", str(out), "--epochs", "6")  # finished: further
    assert code == 0, err
    assert [epochs_of(out / m) for m in MEMBERS] == [6, 6]
    assert table.main([str(out)]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 1 and "| 6 |" in rows[0] and "(2)" in rows[0]

    code, err = run_main(capsys, "--resume", str(out), "--epochs", "3")
    assert code == 2
    one_line(err, "has done 6 epochs, more than --epochs 3")
    code, err = run_main(capsys, "--resume", str(out))
    assert code == 2
    one_line(err, "nothing to resume")
    assert json.loads((out / POPULATION).read_text())["config"]["num_epochs"] == 6


def test_a_truncated_member_checkpoint_is_reported_not_ignored(tmp_path, capsys) -> None:
    out = tmp_path / "pop"
    argv = [*TINY, "--epochs", "2", "--seeds", "0-1", "--out", str(out)]
    assert run_main(capsys, *argv)[0] == 0
    file = out / MEMBERS[1] / CHECKPOINT
    file.write_bytes(file.read_bytes()[:300])
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "3")
    assert code == 2
    one_line(err, f"member {MEMBERS[1]}", str(file), "truncated or damaged")
    assert epochs_of(out / MEMBERS[0]) == 2  # nothing trained


def test_a_truncated_population_checkpoint_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "pop"
    argv = [*TINY, "--epochs", "2", "--impl", "jax", "--seeds", "0-1", "--out", str(out)]
    assert run_main(capsys, *argv)[0] == 0
    file = out / "population.0.npz"
    file.write_bytes(file.read_bytes()[:300])
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "3")
    assert code == 2
    one_line(err, str(file), "truncated or damaged")


# --- item 2: one writer per run directory ----------------------------------------------------


def spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.gru", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})  # fmt: skip


def test_two_writers_on_one_run_directory_one_is_refused_naming_the_holder(
    tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    argv = [*TINY, "--epochs", "150", "--overwrite", "--out", str(out)]
    a, b = spawn(*argv, "--seed", "1"), spawn(*argv, "--hidden", "9", "--seed", "2")
    (_, err_a), (_, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert sorted([a.returncode, b.returncode]) == [0, 2], (err_a, err_b)
    winner, loser, err = (a, b, err_b) if a.returncode == 0 else (b, a, err_a)
    one_line(err, f"run directory {out} is in use by process {winner.pid}", "another --out")
    config, saved = json.loads((out / CONFIG).read_text()), load_checkpoint(out / CHECKPOINT)
    assert (config["seed"], config["num_hiddens"]) == ((1, 8) if winner is a else (2, 9))
    assert (saved.config["seed"], saved.spec.num_hiddens, saved.epoch) == (
        config["seed"], config["num_hiddens"], 150)  # fmt: skip

    # a resume while a run writes is refused too; a dead holder's lock is taken over
    proc = spawn(*TINY, "--epochs", "1000", "--overwrite", "--out", str(out))
    deadline = time.monotonic() + 120
    while str(proc.pid) not in ((out / LOCK).read_text() if (out / LOCK).exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "1001")
    assert code == 2
    one_line(err, f"in use by process {proc.pid}")
    proc.kill()
    proc.wait(timeout=60)
    assert str(proc.pid) in (out / LOCK).read_text()  # the dead holder's
    assert run_main(capsys, *TINY, "--epochs", "1", "--overwrite", "--out", str(out))[0] == 0
