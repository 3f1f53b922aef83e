"""Every code block and command line of the pages a newcomer reads runs, as written, in order.

- Command lines — the lines of ``sh`` blocks and every inline ``python -m experiments...`` — run
  top to bottom, in one fresh folder per page, as a newcomer would type them in a fresh clone:
  a run whose folder an earlier line made collides there as it would for them, a ``--resume``,
  ``table`` or ``compare --populations`` line needs what an earlier line of the page made. Each
  runs in-process through its module's ``main(argv)`` with the reductions the pages announce
  (``REDUCED``) appended (argparse keeps the last value of a flag), and ``--seeds 0-1`` where it
  asks for a population; a ``--resume DIR`` line resumes by one epoch. PyTorch commands (and
  comparisons of PyTorch populations) are skipped when the optional extra is missing.
- ``make`` targets are read with ``make -n`` and the Python commands they run are run the same
  way; ``make test`` is this suite, so it is only checked to run pytest. The two lines a page may
  show that are not commands to run here — ``export RNN_LM_DATA_DIR=...`` (the tests point it at
  the corpus themselves) and ``.venv/bin/pip install -e '.[extra]'`` (installing is CI's job) —
  are checked for their form.
- Python blocks are executed, with ``num_epochs=500`` replaced by the count the page announces
  (``PYTHON_EPOCHS``); the README's quick tour runs once with ``numpy_ref`` and once with
  ``rnn_jax``, as its first line offers.
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
PAGES = {name: ROOT / name for name in ("README.md", "experiments/README.md", "docs/results.md")}
DOCS = [ROOT / "README.md", ROOT / "experiments/README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ["--epochs", "1", "--hidden", "8", "--max-tokens", "2000"]
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
PYTHON_EPOCHS = {"README.md": 2, "experiments/README.md": 1, "docs/results.md": 1}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(python -m experiments\.[^`]*)`")
INSTALL = re.compile(r"^\.venv/bin/pip install -e '\.\[[a-z,]+\]'$")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def code_blocks(page: str) -> list[tuple[str, str]]:
    return FENCE.findall(PAGES[page].read_text(encoding="utf-8"))


def command_lines(page: str) -> list[str]:
    """The page's command lines in order of appearance, each once."""
    text = PAGES[page].read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    for match in FENCE.finditer(text):
        if match.group(1) in ("sh", "bash"):
            for i, line in enumerate(match.group(2).splitlines()):
                line = line.split("#", 1)[0].strip()
                if line:
                    found.append((match.start(2) + i, line))  # in the block's order
    outside = FENCE.sub(lambda m: " " * len(m.group(0)), text)  # inline spans outside blocks
    found += [(m.start(), m.group(1)) for m in INLINE.finditer(outside)]
    return list(dict.fromkeys(line for _, line in sorted(found)))


def needs_torch(name: str, args: list[str]) -> bool:
    if "--impl" in args and args[args.index("--impl") + 1] == "torch":
        return True
    if name == "compare" and "--populations" in args:
        return any("-torch-" in a for a in args)
    return name == "compare" and "--impls" not in args


def run_python_command(argv: list[str], capsys) -> str | None:
    """Run one documented command; the reason it was skipped, or None once it ran."""
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("experiments."), argv
    name = argv[2].split(".", 1)[1]
    args = [a for arg in argv[3:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
    if needs_torch(name, args) and not HAS_TORCH:
        return "PyTorch is an optional extra: .venv/bin/pip install -e '.[torch]'"
    main = importlib.import_module(f"experiments.{name}").main
    reduced = REDUCED[name]
    if "--seeds" in args:  # a population: two seeds are enough to run it
        reduced = [*reduced, "--seeds", "0-1"]
    if "--resume" in args:  # a run an earlier line made, one epoch on
        run = Path(args[args.index("--resume") + 1])
        assert run.exists(), f"{shlex.join(argv)}: no earlier line of the page makes {run}"
        from numpy_ref.checkpoint import load_checkpoint

        done = load_checkpoint(run / "checkpoint.npz").epoch
        reduced = [*RUN[2:], "--epochs", str(done + 1)]  # the run's sizes, one more epoch
    if "--populations" in args:  # finished populations that earlier lines made
        missing = [p for p in args[args.index("--populations") + 1 :] if not Path(p).exists()]
        assert not missing, f"{shlex.join(argv)}: no earlier line of the page makes {missing}"
        reduced = []
    code = main([*args, *reduced])
    captured = capsys.readouterr()
    assert code == 0, f"{shlex.join(argv)} exited {code}: {captured.err}"
    return None


def run_line(line: str, capsys) -> str | None:
    argv = shlex.split(line)
    if argv[0] == "export":  # the corpus for a machine without internet; set by corpus_env
        assert argv[1].startswith("RNN_LM_DATA_DIR="), line
        return None
    if argv[0] == ".venv/bin/pip":
        assert INSTALL.match(line), f"{line}: install an extra as .venv/bin/pip install -e '.[x]'"
        return None
    if argv[0] != "make":
        return run_python_command(argv, capsys)
    dry = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    if argv[1:] == ["test"]:
        assert "-m pytest" in dry.stdout  # this suite: not run from within itself
        return None
    commands = [c for c in dry.stdout.splitlines() if " -m experiments." in c]
    assert commands, f"make {argv[1:]} runs no experiment: {dry.stdout}"
    for command in commands:
        run_python_command(["python", *shlex.split(command)[1:]], capsys)
    return None


@pytest.mark.usefixtures("corpus_env")
@pytest.mark.parametrize("page", list(PAGES))
def test_the_commands_of_a_page_run_top_to_bottom_in_a_fresh_folder(
    page, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    skipped = [line for line in command_lines(page) if run_line(line, capsys)]
    outside = [p.name for p in tmp_path.iterdir() if p.name != "runs"]
    assert not outside, f"{page}'s commands wrote outside runs/: {outside}"
    if skipped:
        pytest.skip(f"{len(skipped)} PyTorch commands of {page} skipped (not installed)")


def test_every_doc_installs_an_extra_one_way() -> None:
    for path in DOCS:
        for line in path.read_text(encoding="utf-8").splitlines():
            for hit in re.finditer(r"(\S*)pip install", line):
                assert hit.group(1).endswith(".venv/bin/"), f"{path.name}: {line.strip()}"


PYTHON_CASES = [
    (page, i, module)
    for page in PAGES
    for i, (lang, body) in enumerate(code_blocks(page))
    if lang == "python"
    for module in (("numpy_ref", "rnn_jax") if "import numpy_ref as impl" in body else ("",))
]


@pytest.mark.usefixtures("corpus_env")
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
    assert skipped.startswith("PyTorch parity: skipped")
    assert ".venv/bin/pip install -e '.[torch]'" in skipped
    assert parity_line({"passed": other}) is None  # not collected: nothing to say


class _Skipped(_Report):
    def __init__(self, nodeid: str, reason: str) -> None:
        super().__init__(nodeid, "setup")
        self.longrepr = (nodeid, 1, f"Skipped: {reason}")


def test_make_test_ends_by_counting_the_tests_skipped_for_want_of_the_corpus() -> None:
    from conftest import CORPUS_MISSING, corpus_line

    missing = [_Skipped("tests/test_data.py::test_a", f"{CORPUS_MISSING}: set ...")] * 4
    other = [_Skipped("tests/test_torch_parity.py", "PyTorch is an optional extra")]
    line = corpus_line({"skipped": missing + other, "passed": [_Report("tests/test_b.py::b")]})
    assert line is not None and line.startswith("Corpus: 4 tests skipped")
    assert "export RNN_LM_DATA_DIR=" in line
    assert corpus_line({"skipped": other}) is None  # the corpus was there: nothing to say


def test_the_readme_is_short() -> None:
    words = len(PAGES["README.md"].read_text(encoding="utf-8").split())
    assert words < 1500, f"README.md has {words} words; the full results live in docs/results.md"
