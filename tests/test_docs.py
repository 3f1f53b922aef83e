"""Every code block and command line of README.md and experiments/README.md runs, as written.

- Python blocks are executed, with ``num_epochs=500`` replaced by the count the page announces
  (``PYTHON_EPOCHS``); the README's quick tour runs once with ``numpy_ref`` and once with
  ``rnn_jax``, as its first line offers.
- Command lines — the lines of ``sh`` blocks and every inline ``python -m experiments...`` — run
  in-process through their module's ``main(argv)``, with the reductions the pages announce
  (``REDUCED``) appended (argparse keeps the last value of a flag), and ``--seeds 0-1`` where it
  asks for a population. A ``--resume DIR`` line
  resumes a run of one epoch (made first if DIR is missing) by one epoch; a ``compare
  --populations`` line compares populations of two seeds made first where missing.
- ``make`` targets are read with ``make -n`` and the Python commands they run are run the same
  way; ``make test`` is this suite, so it is only checked to run pytest.

Everything runs in one temporary folder per page, so the default ``runs/`` directories land there;
each command runs on its own (the tests may run in any order, on several workers): a
``--resume DIR`` or ``experiments.table runs/*`` line first makes the run it needs if it is not
there. PyTorch commands are skipped when the optional extra is missing.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"README.md": ROOT / "README.md", "experiments/README.md": ROOT / "experiments/README.md"}
RUN = ["--epochs", "1", "--hidden", "8", "--max-tokens", "2000", "--overwrite"]
REDUCED = {
    "rnn_scratch": RUN,
    "rnn_concise": RUN,
    "gru": RUN,
    "lstm": RUN,
    "deep_rnn": RUN,
    "compare": RUN,
    "bench": ["--configs", "rnn", "--repeats", "2", "--warmup", "0", "--corpus-mb", "0"],
    "table": [],
    "corpus_stats": [],
    "gradcheck": [],  # already small: V=5, H=3, B=2, T=4
    "gradient_flow": ["--steps", "10", "--hidden", "8", "--batch-size", "2"],
}
PYTHON_EPOCHS = {"README.md": 2, "experiments/README.md": 1}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(python -m experiments\.[^`]*)`")
HAS_TORCH = importlib.util.find_spec("torch") is not None

pytestmark = pytest.mark.usefixtures("corpus_env")


def code_blocks(page: str) -> list[tuple[str, str]]:
    return FENCE.findall(PAGES[page].read_text(encoding="utf-8"))


def command_lines(page: str) -> list[str]:
    """The page's command lines in order of appearance, each once."""
    text = PAGES[page].read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    for match in FENCE.finditer(text):
        if match.group(1) in ("sh", "bash"):
            for line in match.group(2).splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    found.append((match.start(), line))
    outside = FENCE.sub(lambda m: " " * len(m.group(0)), text)  # inline spans outside blocks
    found += [(m.start(), m.group(1)) for m in INLINE.finditer(outside)]
    return list(dict.fromkeys(line for _, line in sorted(found)))


def run_python_command(argv: list[str], capsys) -> None:
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("experiments."), argv
    name = argv[2].split(".", 1)[1]
    patterns = [a for a in argv[3:] if "*" in a]
    if name == "table" and not any(glob.glob(p) for p in patterns):  # something to tabulate
        make = importlib.import_module("experiments.gru").main
        assert make([*RUN, "--seeds", "0-1", "--out", "runs/gru-numpy-pop"]) == 0
    args = [a for arg in argv[3:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
    if "--plot" in args:  # run from the repository root, where the figure's folder (docs/) exists
        Path(args[args.index("--plot") + 1]).parent.mkdir(parents=True, exist_ok=True)
    needs_torch = "--impl" in args and args[args.index("--impl") + 1] == "torch"
    needs_torch |= name == "compare" and "--impls" not in args
    if needs_torch and not HAS_TORCH:
        pytest.skip("PyTorch is an optional extra: pip install -e '.[dev,torch]'")
    main = importlib.import_module(f"experiments.{name}").main
    reduced = REDUCED[name]
    if "--seeds" in args:  # a population: two seeds are enough to run it
        reduced = [*reduced, "--seeds", "0-1"]
    if "--resume" in args:  # a run of one epoch to resume (made here if missing), one epoch on
        run = Path(args[args.index("--resume") + 1])
        if not run.exists():
            assert main([*RUN, "--out", str(run)]) == 0
        from numpy_ref.checkpoint import load_checkpoint

        done = load_checkpoint(run / "checkpoint.npz").epoch
        reduced = [*RUN[2:-1], "--epochs", str(done + 1)]  # the run's sizes, one more epoch
    if "--populations" in args:  # finished populations to compare, made here if missing
        for path in args[args.index("--populations") + 1 :]:  # runs/<section>[-<iter>]-<impl>-pop
            section, *iters, impl, _ = Path(path).name.split("-")
            if not Path(path).exists():
                make = importlib.import_module(f"experiments.{section}").main
                argv_ = [*RUN, "--impl", impl, "--seeds", "0-1", "--out", path]
                assert make([*argv_, *(["--iter", *iters] if iters else [])]) == 0
        reduced = ["--overwrite"]
    code = main([*args, *reduced])
    captured = capsys.readouterr()
    assert code == 0, f"{shlex.join(argv)} exited {code}: {captured.err}"


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory) -> dict[str, Path]:
    return {page: tmp_path_factory.mktemp(page.replace("/", "-")) for page in PAGES}


CASES = [(page, line) for page in PAGES for line in command_lines(page)]


@pytest.mark.parametrize(("page", "line"), CASES, ids=[f"{p}: {c}" for p, c in CASES])
def test_every_command_line_runs(page, line, workdirs, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdirs[page])
    argv = shlex.split(line)
    if argv[0] != "make":
        run_python_command(argv, capsys)
        return
    dry = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    if argv[1:] == ["test"]:
        assert "-m pytest" in dry.stdout  # this suite: not run from within itself
        return
    commands = [c for c in dry.stdout.splitlines() if " -m experiments." in c]
    assert commands, f"make {argv[1:]} runs no experiment: {dry.stdout}"
    for command in commands:
        run_python_command(["python", *shlex.split(command)[1:]], capsys)


PYTHON_CASES = [
    (page, i, module)
    for page in PAGES
    for i, (lang, body) in enumerate(code_blocks(page))
    if lang == "python"
    for module in (("numpy_ref", "rnn_jax") if "import numpy_ref as impl" in body else ("",))
]


@pytest.mark.parametrize(("page", "index", "impl"), PYTHON_CASES)
def test_every_python_block_runs(page, index, impl, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    lang, body = code_blocks(page)[index]
    assert "num_epochs=500" in body or "num_epochs" not in body
    body = body.replace("num_epochs=500", f"num_epochs={PYTHON_EPOCHS[page]}")
    if impl:
        body = body.replace("import numpy_ref as impl", f"import {impl} as impl")
    exec(compile(body, f"{page} block {index}", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.strip()  # every block shows its result


def test_the_pages_announce_the_reductions_the_tests_apply() -> None:
    for page, path in PAGES.items():
        text = " ".join(path.read_text(encoding="utf-8").split())
        assert "--epochs 1 --hidden 8 --max-tokens 2000" in text, page
    readme = " ".join(PAGES["README.md"].read_text(encoding="utf-8").split())
    assert "the tests run 2 epochs" in readme
    assert "the tests resume a run of one epoch by one epoch" in readme
    assert "the tests run it with `--configs rnn --repeats 2 --warmup 0 --corpus-mb 0`" in readme
    assert "the tests run it with `--steps 10 --hidden 8 --batch-size 2`" in readme
    assert "Python block with `num_epochs=1`" in " ".join(
        PAGES["experiments/README.md"].read_text(encoding="utf-8").split()
    )


class _Report:
    def __init__(self, nodeid: str, when: str = "call") -> None:
        self.nodeid, self.when = nodeid, when


def test_make_test_ends_by_counting_the_pytorch_parity_tests_or_saying_how_to_enable_them():
    from conftest import parity_line

    ran = [_Report("tests/test_torch_parity.py::test_a")] * 3
    other = [_Report("tests/test_data.py::test_b")]
    assert parity_line({"passed": ran + other}) == "PyTorch parity: 3 tests ran (3 passed)."
    skipped = parity_line(
        {"passed": other, "skipped": [_Report("tests/test_torch_parity.py", "collect")]}
    )
    assert (
        skipped.startswith("PyTorch parity: skipped") and "pip install -e '.[dev,torch]'" in skipped
    )
    assert parity_line({"passed": other}) is None  # not collected: nothing to say
