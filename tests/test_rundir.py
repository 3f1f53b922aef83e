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
from experiments.run.rundir import (
    CHECKPOINT,
    CONFIG,
    LOCK,
    METRICS,
    PLOT,
    POPULATION,
    STAGING,
    SUMMARY,
)
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
    if impl == "numpy":  # members are runs of their own
        assert epochs_of(out / MEMBERS[0]) == 4
    else:  # the population's checkpoint; members' own files come after the last epoch
        assert population.checkpoint.read(saved)[0] == 1
        assert not (out / MEMBERS[0] / CHECKPOINT).exists()

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


# --- item 3: --overwrite replaces a run directory of either kind whole -------------------------


def population_config(argv: list[str]):
    from experiments.run import flags

    args = flags.build_parser("gru").parse_args(argv)
    (config,), _ = command.configs_from_args("gru", args, "cmd")
    return config


SINGLE_FILES = {CHECKPOINT, CONFIG, METRICS, PLOT, SUMMARY}


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("impl", ["numpy", "jax"])
def test_overwrite_replaces_a_run_by_a_population_and_back_whole(impl, tmp_path, capsys) -> None:
    from experiments.populations import population
    from experiments.populations.runner import run_population
    from experiments.run.loop import RunInterrupted

    out = tmp_path / "run"
    single = [*TINY, "--epochs", "2", "--impl", impl, "--out", str(out)]
    pop = [*single, "--seeds", "0-1", "--overwrite"]
    assert run_main(capsys, *single)[0] == 0
    before = {name: (out / name).read_bytes() for name in (CHECKPOINT, CONFIG, METRICS)}
    config = population_config(pop)
    with pytest.raises(RunInterrupted, match="the earlier result there is kept"):
        run_population(config, population.start(config, False), stop=lambda: True)
    assert visible(out) == SINGLE_FILES
    assert {name: (out / name).read_bytes() for name in before} == before

    assert run_main(capsys, *pop)[0] == 0
    assert visible(out) & SINGLE_FILES == {SUMMARY} and (out / POPULATION).is_file()
    assert {m for m in MEMBERS if (out / m / CHECKPOINT).is_file()} == set(MEMBERS)

    code, err = run_main(capsys, *single, "--overwrite", "--max-perplexity", "1")
    assert code == 3 and f"the earlier result in {out} is kept" in err
    assert (out / POPULATION).is_file() and not (out / CHECKPOINT).exists()
    assert run_main(capsys, *single, "--overwrite", "--seed", "3")[0] == 0
    assert visible(out) == SINGLE_FILES  # no population.json, member, spread.png or .npz left
    assert run_main(capsys, "--resume", str(out), "--epochs", "3")[0] == 0
    saved = load_checkpoint(out / CHECKPOINT)
    assert (saved.epoch, saved.config["seed"]) == (3, 3)


# --- items 10, 15: nothing half-made before the first checkpoint; kill -9 leftovers cleaned -----


@pytest.mark.parametrize("kind", ["run", "numpy population", "jax population"])
def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing(kind, tmp_path, capsys) -> None:
    from experiments.populations import population
    from experiments.populations.runner import run_population
    from experiments.run import runner
    from experiments.run.loop import RunInterrupted

    out = tmp_path / "new" / "run"
    argv = [*TINY, "--epochs", "2", "--out", str(out)]
    if kind != "run":
        argv += ["--seeds", "0-1", "--impl", kind.split()[0]]
    config = population_config(argv)
    with pytest.raises(RunInterrupted, match="before any epoch was complete: nothing was saved"):
        if kind == "run":
            runner.run_experiment(config, stop=lambda: True)
        else:
            run_population(config, population.start(config, False), stop=lambda: True)
    assert not out.exists()
    code, err = run_main(capsys, *argv)  # a plain rerun is not refused
    assert code == 0, err


def test_what_kill_9_left_is_cleaned_by_the_next_run_and_resume(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    (out / STAGING).mkdir(parents=True)
    (out / STAGING / CONFIG).write_text("{}")  # a run killed before its first checkpoint
    argv = [*TINY, "--epochs", "2", "--out", str(out)]
    assert run_main(capsys, *argv)[0] == 0  # not refused
    assert not (out / STAGING).exists()
    tmp = out / f".{CHECKPOINT}.999999.0badc0de.tmp"
    tmp.write_bytes(b"half a checkpoint")
    (out / STAGING).mkdir()
    assert run_main(capsys, "--resume", str(out), "--epochs", "3")[0] == 0
    assert not tmp.exists() and not (out / STAGING).exists()


# --- item 4: the corpus recorded by absolute path and SHA-1 -------------------------------------


def test_the_corpus_is_recorded_and_a_resume_with_another_text_is_refused(
    tmp_path, corpus_file, monkeypatch, capsys
) -> None:
    text = corpus_file.read_text(encoding="utf-8")
    (tmp_path / "c").mkdir()
    data = tmp_path / "c" / "text.txt"
    data.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--epochs", "2", "--data", "c/text.txt", "--out", "run")[0] == 0
    config = json.loads((out / CONFIG).read_text())
    assert config["data_path"] == str(data) and len(config["data_sha1"]) == 40
    assert load_checkpoint(out / CHECKPOINT).config["data_sha1"] == config["data_sha1"]

    monkeypatch.chdir(tmp_path / "c")  # another folder; the same file named absolutely
    assert run_main(capsys, "--resume", str(out), "--epochs", "3", "--data", str(data))[0] == 0
    assert run_main(capsys, "--resume", str(out), "--epochs", "4", "--data", "text.txt")[0] == 0

    data.write_text(text.replace("time", "emit"), encoding="utf-8")  # the same vocabulary
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "5")
    assert code == 2
    one_line(err, str(data), "is not the text the run was trained on", f"--data {data}")
    assert run_main(capsys, "--resume", str(out), "--epochs", "5", "--data", str(data))[0] == 0
    assert load_checkpoint(out / CHECKPOINT).config["data_sha1"] != config["data_sha1"]

    other = tmp_path / "c" / "other.txt"  # item 11: another vocabulary, one line
    other.write_text(text.replace("z", "y").replace("q", "k"), encoding="utf-8")
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "6", "--data", str(other))
    assert code == 2
    one_line(err, str(other), "another vocabulary")
    assert load_checkpoint(out / CHECKPOINT).epoch == 5


# --- item 16: --resume refuses what it would ignore ---------------------------------------------


def test_resume_refuses_another_out_seeds_and_lists(tmp_path, capsys) -> None:
    out, pop, other = tmp_path / "run", tmp_path / "pop", tmp_path / "other"
    assert run_main(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    assert run_main(capsys, *TINY, "--epochs", "1", "--seeds", "0-1", "--out", str(pop))[0] == 0
    cases = [
        (out, ["--out", str(other)], f"--out {other} is another folder"),
        (out, ["--seeds", "0-3"], "--seeds would make a population"),
        (out, ["--lr", "0.5,2"], "--lr would make a population"),
        (out, ["--theta", "1,2"], "--theta would make a population"),
        (pop, ["--seeds", "0-3"], "--seeds 0,1,2,3 differs from the population's 0,1"),
        (pop, ["--lr", "2"], "--lr 2 differs from the population's 1"),
        (pop, ["--theta", "0.5,1"], "--theta 0.5,1 differs"),
    ]
    for folder, argv, words in cases:
        code, err = run_main(capsys, "--resume", str(folder), "--epochs", "2", *argv)
        assert code == 2, argv
        one_line(err, words)
    assert not other.exists() and load_checkpoint(out / CHECKPOINT).epoch == 1
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "2", "--out", str(out))
    assert code == 0, err


# --- items 14, 17, 18, 20: the truth about a run that is not what it seems ----------------------


def test_a_run_whose_summary_was_not_written_is_finished_by_resume(tmp_path, capsys) -> None:
    """A write failure after the last checkpoint (the plot, the summary): --resume finishes it,
    table calls it unfinished."""
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--epochs", "2", "--out", str(out))[0] == 0
    (out / SUMMARY).unlink()
    assert table.main([str(out)]) == 2
    one_line(capsys.readouterr().err, f"unfinished: finish with --resume {out}")
    code, err = run_main(capsys, "--resume", str(out))
    assert code == 0, err
    assert json.loads((out / SUMMARY).read_text())["epochs"] == 2 and epochs_of(out) == 2
    code, err = run_main(capsys, "--resume", str(out))
    assert code == 2
    one_line(err, "nothing to resume")


def test_a_damaged_population_json_says_so(tmp_path, capsys) -> None:
    out = tmp_path / "pop"
    assert run_main(capsys, *TINY, "--epochs", "1", "--seeds", "0-1", "--out", str(out))[0] == 0
    (out / POPULATION).write_text('{"format": "rnn-lm popul')
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "2")
    assert code == 2
    one_line(err, f"{POPULATION} is damaged")


def test_table_does_not_show_an_unfinished_populations_member_as_a_run(tmp_path, capsys) -> None:
    out = tmp_path / "pop"
    assert run_main(capsys, *TINY, "--epochs", "1", "--seeds", "0-1", "--out", str(out))[0] == 0
    (out / SUMMARY).unlink()  # as if seed 1 were still training
    (out / MEMBERS[1] / SUMMARY).unlink()
    assert table.main([str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    one_line(captured.err, "unfinished")


ROOT_USER = os.geteuid() == 0


@pytest.mark.skipif(ROOT_USER, reason="root reads and writes whatever the permissions say")
def test_an_unreadable_checkpoint_and_a_read_only_folder_are_named(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    (out / CHECKPOINT).chmod(0)
    try:
        code, err = run_main(capsys, "--resume", str(out), "--epochs", "2")
    finally:
        (out / CHECKPOINT).chmod(0o644)
    assert code == 2
    one_line(err, "permission denied")
    assert "truncated" not in err
    out.chmod(0o555)
    try:
        code, err = run_main(capsys, "--resume", str(out), "--epochs", "2")
    finally:
        out.chmod(0o755)
    assert code == 2
    one_line(err, "not writable")
    assert epochs_of(out) == 1  # checked before any epoch


def test_a_checkpoint_without_read_permission_is_not_called_damaged(
    tmp_path, monkeypatch, capsys
) -> None:
    """The same as the test above where it is skipped (root): os.access says no."""
    from numpy_ref import checkpoint

    out = tmp_path / "run"
    assert run_main(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    monkeypatch.setattr(checkpoint.os, "access", lambda path, mode: False)
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "2")
    assert code == 2
    one_line(err, str(out / CHECKPOINT), "cannot be read (permission denied)")
    assert "truncated" not in err


def test_a_numpy_population_killed_at_a_random_moment_resumes_to_more_epochs(
    tmp_path, capsys
) -> None:
    """Item 1 as reported: kill -9 during the population, --resume --epochs 50."""
    import random
    import signal

    out = tmp_path / "pop"
    proc = spawn(*TINY, "--epochs", "40", "--checkpoint-every", "4", "--seeds", "0-1",
                 "--out", str(out))  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / MEMBERS[0] / CHECKPOINT).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 3.0))
    proc.kill()
    assert proc.wait(timeout=60) in (-signal.SIGKILL, 0)
    code, err = run_main(capsys, "--resume", str(out), "--epochs", "50")
    assert code == 0, err
    assert [epochs_of(out / m) for m in MEMBERS] == [50, 50]
    assert json.loads((out / SUMMARY).read_text())["epochs"] == 50
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(STAGING))
