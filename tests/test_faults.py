"""The defects of issue 20 outside the training loop, each answered with one line and its exit code.

Sizes are checked before anything is allocated or written (seeds, threads, hidden units, steps,
a benchmark's corpus), unknown or abbreviated flags are refused, a device is named as the flag
was typed, a damaged compile-cache entry is replaced once, and a signal ends every command with
exit 130 (SIGINT) or 143 (SIGTERM) and one line, never a traceback. The checks that the code
before this fix would fail by exhausting the machine run in a subprocess under resource limits
(address space, file size), so that they fail instead of taking the machine down.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.analysis import table
from experiments.run import flags, runtime
from experiments.run.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def limited(memory_gib: float = 6, file_mb: float | None = None):
    """A ``preexec_fn``: the child's address space (and written file sizes) capped."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(memory_gib * GIB),) * 2)
        if file_mb is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(file_mb * 2**20),) * 2)

    return apply


def command(module: str, *argv: str, timeout: float = 60, **limits) -> tuple[int, str]:
    """Run ``python -m experiments.<module> argv``; its exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limited(**limits),
    )
    return done.returncode, done.stderr


def one_line(err: str, *fragments: str) -> None:
    """stderr is one line (no traceback) holding every fragment."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- sizes: checked before they are allocated (items 5, 22, 7, 12, 8, 6) ----------------------


@pytest.mark.parametrize(
    ("module", "argv"),
    [("gru", ["--seeds", "0-1000000000"]), ("compare", ["--seeds", "1000000000"])],
    ids=["section", "compare"],
)
def test_a_billion_seeds_is_refused_before_the_list_is_built(
    module: str, argv: list[str], tmp_path: Path
) -> None:
    code, err = command(module, *argv, "--out", str(tmp_path / "run"), timeout=30)
    assert code == 2
    one_line(err, "--seeds", "1,000,000,00")
    assert not (tmp_path / "run").exists()


def test_a_hundred_thousand_seeds_are_refused_as_members() -> None:
    with pytest.raises(ConfigError, match=r"--seeds: '0-100000' makes 100,001 members"):
        flags.build_parser("gru").parse_args(["--seeds", "0-100000"])
    assert len(flags.build_parser("gru").parse_args(["--seeds", "0-99999"]).seeds) == 100_000


def test_a_population_beyond_memory_names_its_members_as_the_cause(
    corpus_env: Path, tmp_path: Path
) -> None:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX checks a population's memory for all members at once")
    code, err = command("gru", "--impl", "jax", "--seeds", "0-50000", "--out", str(tmp_path / "p"))
    assert code == 2
    one_line(err, "50,001 members (--seeds", "fewer seeds")
    assert not (tmp_path / "p").exists()


def test_threads_beyond_a_bound_are_refused_naming_the_flag() -> None:
    parser = flags.build_parser("gru")
    with pytest.raises(ConfigError, match="--threads"):
        parser.parse_args(["--threads", "10000"])
    assert parser.parse_args(["--threads", str(runtime.max_threads())]).threads > 0
    with pytest.raises(ConfigError, match="--threads 10000"):
        runtime.configure(threads=10_000, compile_cache=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--hidden", "1000000000000"],
        ["--vocab", "1000000000000"],
        ["--steps", "1000000000000"],
        ["--hidden", "1" + "0" * 400],
    ],
    ids=["hidden", "vocab", "steps", "hidden-400-digits"],
)
def test_gradcheck_refuses_sizes_beyond_memory(argv: list[str]) -> None:
    code, err = command("gradcheck", *argv, "--no-jax")
    assert code == 2
    one_line(err, argv[0], "GiB of memory")


def test_gradient_flow_refuses_sizes_beyond_memory(tmp_path: Path) -> None:
    code, err = command("gradient_flow", "--hidden", "100000000", "--out", str(tmp_path / "f.png"))
    assert code == 2
    one_line(err, "--hidden 100000000", "GiB of memory")


def test_bench_refuses_a_corpus_beyond_disk_or_memory_before_writing_it(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    argv = "--quick --corpus-mb 100000000 --configs rnn --impls numpy --no-compile-cache".split()
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        preexec_fn=limited(file_mb=64),
    )
    assert done.returncode == 2
    one_line(done.stderr, "--corpus-mb 100000000")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_corpus_benchmark_removes_its_text(tmp_path: Path, corpus_env: Path) -> None:
    argv = ["--mb", "400", "--tokens", "char"]
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.bench_corpus", *argv, "--folder", str(tmp_path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limited(file_mb=500),
    )
    deadline = time.monotonic() + 30
    while not any(tmp_path.rglob("*.txt")) and time.monotonic() < deadline:
        time.sleep(0.02)  # until the text is being written
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143
    one_line(err, "SIGTERM")
    assert list(tmp_path.iterdir()) == []


# --- flags: no abbreviation, no unknown flag (items 21, issue 19) -----------------------------


def _parsers():
    from experiments.analysis import compare
    from experiments.benchmarks import bench
    from experiments.study import gradcheck, gradient_flow

    return {
        "section --epoch": lambda: flags.build_parser("gru").parse_args(["--epoch", "3"]),
        "compare --epoch": lambda: compare.build_parser().parse_args(["--epoch", "3"]),
        "gradcheck --hid": lambda: gradcheck.build_parser().parse_args(["--hid", "3"]),
        "gradient_flow --hid": lambda: gradient_flow.build_parser().parse_args(["--hid", "3"]),
        "bench --rep": lambda: bench.parse_args(["--rep", "3"]),
        "table --pl": lambda: table.build_parser().parse_args(["--pl", "x.png", "runs"]),
    }


@pytest.mark.parametrize("case", list(_parsers()))
def test_an_abbreviated_flag_is_refused(case: str) -> None:
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        _parsers()[case]()


def test_corpus_stats_and_bench_corpus_refuse_an_abbreviated_flag() -> None:
    from experiments.benchmarks import bench_corpus
    from experiments.study import corpus_stats

    assert corpus_stats.main(["--batch", "2"]) == 2
    with pytest.raises(SystemExit) as stop:
        bench_corpus.main(["--m", "1"])
    assert stop.value.code == 2


def test_table_refuses_an_unknown_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert table.main(["--bogus", str(tmp_path)]) == 2
    one_line(capsys.readouterr().err, "unrecognized arguments: --bogus")


def test_table_refuses_a_plot_in_a_missing_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    plot = tmp_path / "missing" / "x.png"
    assert table.main(["--plot", str(plot), str(tmp_path / "run")]) == 2
    one_line(capsys.readouterr().err, f"--plot {plot}", "does not exist")
    assert not plot.parent.exists()


def test_gradient_flow_refuses_a_folder_as_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus_env: Path
) -> None:
    from experiments.study import gradient_flow

    argv = ["--out", str(tmp_path), "--steps", "3", "--hidden", "4", "--batch-size", "2"]
    assert gradient_flow.main(argv) == 2
    one_line(capsys.readouterr().err, f"--out {tmp_path} is a folder")
    assert list(tmp_path.iterdir()) == []


# --- devices (items 9, 23) ---------------------------------------------------------------------


def _has_gpu() -> bool:
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


@pytest.mark.parametrize("extra", [[], ["--population", "1,2"]], ids=["steps", "population"])
def test_bench_on_a_missing_gpu_is_one_line(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("jax")
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    from experiments.benchmarks import bench

    assert bench.main(["--device", "gpu", "--quick", "--no-compile-cache", *extra]) == 2
    one_line(capsys.readouterr().err, "--device gpu", "GPU")


def test_a_missing_cpu_device_is_named_as_typed() -> None:
    pytest.importorskip("jax")
    from experiments.run.backends import ImplUnavailableError, JaxBackend
    from experiments.run.config import section_config

    config = section_config("gru", impl="jax", device="cpu:3", out="unused")
    with pytest.raises(ImplUnavailableError) as err:
        JaxBackend(config)
    message = str(err.value)
    assert "--device cpu:3" in message and "cpu:0" in message
    assert "device=" not in message and "'cpu" not in message and "jaxlib" not in message


def test_torch_refuses_a_cpu_index_it_does_not_have() -> None:
    pytest.importorskip("torch")
    from experiments.torch_ref import resolve_device

    assert str(resolve_device("cpu:0")) == "cpu:0"
    with pytest.raises(ValueError, match="--device cpu:3: .*only cpu:0"):
        resolve_device("cpu:3")


# --- the compile cache (item 24) ---------------------------------------------------------------

_COMPILE = (
    "import sys\n"
    "from experiments.run import runtime\n"
    "runtime.configure(threads=1, cache_path=sys.argv[1])\n"
    "import jax, jax.numpy as jnp\n"
    "print(float(jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(3)).sum()))\n"
)


def test_a_cache_entry_cut_short_is_replaced_once(tmp_path: Path) -> None:
    pytest.importorskip("jax")

    def compile_once() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE, str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    compile_once()
    entries = sorted(tmp_path.glob("*-cache"))
    assert entries
    for entry in entries:  # as a full disk leaves them
        entry.write_bytes(entry.read_bytes()[:100])
    one_line(compile_once(), "compile cache: removed", "damaged")
    assert "Error reading" not in compile_once()  # the next run reads the entries written anew


# --- signals (item 13) -------------------------------------------------------------------------


def interpreter_start() -> float:
    """Seconds for this Python to start and end (``python -c pass``) on the machine's load now: a
    signal before it lands in the interpreter's own start-up, which no command can answer."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def interrupt(argv: list[str], signum: int, after: float, **kwargs) -> tuple[int, str]:
    """Start ``python -m experiments.<argv>``, send ``signum`` ``after`` seconds after the
    interpreter's own start-up."""
    started = interpreter_start()
    process = subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    time.sleep(started + after)
    assert process.poll() is None, "the command ended before the signal: give it more work"
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


GRADCHECK = ["experiments.gradcheck", "--hidden", "40", "--steps", "30"]  # ~30 s of work
LONG_BENCH = "experiments.bench --quick --configs lstm --repeats 1000 --no-compile-cache"


@pytest.mark.parametrize("after", [0.3, 1.0, 3.5], ids=["imports", "start", "jax"])
def test_gradcheck_stops_on_sigint_with_one_line(after: float) -> None:
    code, err = interrupt(GRADCHECK, signal.SIGINT, after)
    assert code == 130
    one_line(err, "experiments.gradcheck: SIGINT")


@pytest.mark.parametrize(
    ("argv", "signum", "code"),
    [
        ("experiments.gradient_flow --steps 400 --hidden 512".split(), signal.SIGINT, 130),
        (LONG_BENCH.split(), signal.SIGTERM, 143),
        (LONG_BENCH.split(), signal.SIGINT, 130),
    ],
    ids=["gradient_flow", "bench-sigterm", "bench-sigint"],
)
def test_study_and_bench_commands_stop_on_a_signal_with_one_line(
    argv: list[str], signum: int, code: int, tmp_path: Path, corpus_env: Path
) -> None:
    if argv[0] == "experiments.gradient_flow":
        argv = [*argv, "--out", str(tmp_path / "flow.png")]
    found, err = interrupt(argv, signum, 2.0)
    assert found == code
    one_line(err, f"{argv[0]}: {signal.Signals(signum).name}")
    assert list(tmp_path.iterdir()) == []


def test_corpus_stats_stops_on_sigint_with_one_line(tmp_path: Path, corpus_env: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(corpus_env.read_bytes() * 120)  # ~20 MB: seconds of tokenizing
    code, err = interrupt(["experiments.corpus_stats", "--data", str(big)], signal.SIGINT, 1.0)
    assert code == 130
    one_line(err, "experiments.corpus_stats: SIGINT")
