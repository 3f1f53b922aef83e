"""What the tests share: the model variants, the float64 switch, relative differences, the corpus.

``VARIANTS`` comes from the table of cells (``numpy_ref.cells.CELLS``): a new cell kind is tested
everywhere the moment it is in the table. Import the constants and helpers with
``from conftest import VARIANTS, rel_diff`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# One BLAS/OpenMP thread per test process: the suite runs on one pytest-xdist worker per core, and
# multithreaded BLAS on a busy machine is many times slower than one thread. Set before NumPy and
# PyTorch are imported (they read it once); subprocesses inherit it.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from experiments.run.runtime import default_threads, set_xla_flags  # noqa: E402
from numpy_ref.cells import CELLS  # noqa: E402
from numpy_ref.corpus import DATA_DIR_ENV, FILE_NAME  # noqa: E402
from numpy_ref.spec import ModelSpec, flatten_params  # noqa: E402

# (kind, gru_reset) of every cell, and its name for test ids: rnn, gru_before, gru_after, lstm.
VARIANTS = [(cell.kind, cell.reset or "before") for cell in CELLS.values()]
VARIANT_IDS = list(CELLS)
# every variant with one and with two layers
CASES = [(kind, reset, layers) for kind, reset in VARIANTS for layers in (1, 2)]
CASE_IDS = [f"{name}-L{layers}" for name in CELLS for layers in (1, 2)]

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# This process computes like a command with its default threads and XLA's flags: XLA sizes its
# CPU pools from NPROC and reads XLA_FLAGS when JAX starts its backend (before any command of a
# test could set them), and results may differ in the last bits between thread counts or
# compiler settings, so a run started in a subprocess and resumed in this process end
# bit-identical only with the same ones (tests/test_durable.py).
os.environ.setdefault("NPROC", str(default_threads()))
set_xla_flags()


def spec_of(kind: str, reset: str, V: int, H: int, layers: int = 1) -> ModelSpec:
    return ModelSpec(kind, V, H, layers, reset)


def rel_diff(reference, other) -> float:
    """max |reference - other| / max |reference| over all arrays of two parameter dicts."""
    ref, oth = flatten_params(reference), flatten_params(other)
    assert ref.keys() == oth.keys()
    scale = max(float(np.max(np.abs(v))) for v in ref.values())
    return max(float(np.max(np.abs(np.asarray(ref[k]) - np.asarray(oth[k])))) for k in ref) / scale


def state_rel_diff(reference, other) -> float:
    """The same for two states (tuples of arrays)."""
    scale = max(float(np.max(np.abs(s))) for s in reference)
    pairs = zip(reference, other, strict=True)
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs) / scale


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one per program XLA compiles


@contextlib.contextmanager
def counting_compiles() -> Iterator[list[float]]:
    """The programs XLA compiles inside the ``with`` block, through JAX's public monitoring
    events: yields a list that receives each compilation's duration in seconds as it happens."""
    import jax

    compiles: list[float] = []

    def count(event: str, seconds: float, **kwargs) -> None:
        if event == COMPILE_EVENT:
            compiles.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(count)


@pytest.fixture
def x64():
    """JAX in float64 for one test only (``jax.enable_x64`` restores the setting after it)."""
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        yield jax


CORPUS_MISSING = f"the corpus {FILE_NAME} is not available"


def _corpus_dir() -> Path | None:
    for candidate in (os.environ.get(DATA_DIR_ENV), _SHARED):
        if candidate and (Path(candidate) / FILE_NAME).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def corpus_file() -> Path:
    """The book's timemachine.txt; skipped locally when absent, a failure under CI."""
    found = _corpus_dir()
    if found is None:
        message = (
            f"{CORPUS_MISSING}: set ${DATA_DIR_ENV} to the folder holding it (CI points it "
            f"at ../shared/data)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found / FILE_NAME


@pytest.fixture
def corpus_env(corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$RNN_LM_DATA_DIR`` at the real corpus for the duration of one test."""
    monkeypatch.setenv(DATA_DIR_ENV, str(corpus_file.parent))
    return corpus_file


# --- the last lines of `make test`: did the PyTorch parity tests run? Was the corpus there? -----

PARITY_FILE = "test_torch_parity.py"
_LAST_LINES = pytest.StashKey[list[str]]()


def parity_line(stats: dict) -> str | None:
    """How many PyTorch parity tests ran, or that they were skipped and how to enable them."""
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        counts[outcome] = sum(
            1
            for r in stats.get(outcome, [])
            if getattr(r, "when", "call") in ("call", "setup", "collect")
            and PARITY_FILE in getattr(r, "nodeid", "")
        )
    ran = counts["passed"] + counts["failed"] + counts["error"]
    if ran:
        return f"PyTorch parity: {ran} tests ran ({counts['passed']} passed)."
    if counts["skipped"]:
        return (
            "PyTorch parity: skipped (PyTorch is not installed); enable it with "
            "`.venv/bin/pip install -e '.[torch]'` (the pinned CPU build), then `make test`."
        )
    return None


def _skip_reason(report) -> str:
    """A skipped report's reason: pytest keeps it as (path, line, reason) in ``longrepr``."""
    longrepr = getattr(report, "longrepr", None)
    return str(longrepr[2]) if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3 else ""


def corpus_line(stats: dict) -> str | None:
    """How many tests were skipped for want of the corpus, and how to run them; None if none."""
    skipped = sum(1 for r in stats.get("skipped", []) if CORPUS_MISSING in _skip_reason(r))
    if not skipped:
        return None
    return (
        f"Corpus: {skipped} tests skipped ({FILE_NAME} not found); run them with "
        f"`export {DATA_DIR_ENV}=/path/to/folder/with/{FILE_NAME}`, then `make test`."
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    stats = terminalreporter.stats
    config.stash[_LAST_LINES] = [line for line in (parity_line(stats), corpus_line(stats)) if line]


def pytest_unconfigure(config) -> None:
    """The very last lines of the run (after pytest's own summary)."""
    lines = config.stash.get(_LAST_LINES, [])
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines if reporter is not None else []:
        reporter.write_line(line)
