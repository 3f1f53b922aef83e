"""Time and peak memory of loading a large corpus: read, checked, tokenized and indexed.

    python -m experiments.bench_corpus --mb 100                 # the book repeated to 100 MB
    python -m experiments.bench_corpus --mb 100 --text random   # seeded words, lines, punctuation
    python -m experiments.bench_corpus --mb 10 --tokens word --json corpus.json

A text of ``--mb`` MB (10^6 bytes) is written into a temporary folder: the book's
``timemachine.txt`` repeated (``book``), or words drawn from a seeded generator (``random``: a
Zipf law over 50,000 made-up words of 1 to 20 letters, some capitalised, commas, full stops and a
line break every 5 to 15 words; a block of at most 4 MB, repeated). Then
``load_corpus_time_machine(path=FILE, token=...)`` runs once per token kind, each in a fresh
Python subprocess, and reports:

- ``seconds``: wall time of the call (``time.perf_counter``), the file read, its UTF-8 check, the
  book's preprocessing, tokenization, the vocabulary and the index array;
- ``peak_rss_mb``: the subprocess's peak resident set size, and ``load_rss_mb``, its rise during
  the call (the peak minus the peak before it, when only the imports were done);
  ``load_rss_per_file_byte`` divides the rise by the file size.

How memory is measured: in a fresh Python subprocess per load, the peak resident set size as the
kernel reports it, ``VmHWM`` in ``/proc/self/status`` on Linux (``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` elsewhere). Not ``ru_maxrss`` on Linux: it survives fork and exec, so a child starts
with its parent's peak (here, the parent that wrote the text). The peak RSS counts everything the
machine had to hold: NumPy buffers, Python objects, the allocator's overhead and the memory it
kept after a free; a fresh process starts from a known state, so one load cannot hide in another's
peak. Not ``tracemalloc``: it sees only the allocations it hooks, not the allocator's overhead or
kept memory, and it slows every Python allocation it records, which would distort the time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.run import signals
from experiments.run.backends import cpu_description
from experiments.run.config import ConfigError
from experiments.run.runtime import available_memory
from numpy_ref.corpus import CorpusError, CorpusUnavailableError, find_time_machine

ROOT = Path(__file__).resolve().parents[1]  # the subprocesses import numpy_ref from here
TEXTS = ("book", "random")
TOKENS = ("char", "word")
MB = 10**6
LOAD_PER_FILE_BYTE = 3  # memory of a load per byte of text, at most (docs/performance.md: < 3x)

# Runs in the subprocess: argv = [path, token]; prints one JSON line.
_MEASURE = """
import json, sys, time
from numpy_ref.data import load_corpus_time_machine

def peak_rss():
    try:  # Linux: the high-water mark of this process image (ru_maxrss keeps the parent's)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except OSError:
        import resource
        unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit

before = peak_rss()
start = time.perf_counter()
corpus, vocab = load_corpus_time_machine(path=sys.argv[1], token=sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "tokens": int(corpus.size), "vocab_size": len(vocab),
                  "dtype": str(corpus.dtype), "rss_before": before, "peak_rss": peak_rss()}))
"""


def write_text(path: str | os.PathLike[str], mb: float, text: str = "book", seed: int = 0) -> Path:
    """Write ``mb`` MB (exactly ``round(mb * 10**6)`` bytes) of ``text`` ("book" or "random")."""
    if text not in TEXTS:
        raise ValueError(f"text must be one of {TEXTS}, got {text!r}")
    path, size = Path(path), int(round(mb * MB))
    if text == "book":
        block = find_time_machine().read_bytes()
    else:
        block = random_text(min(size, 4 * MB), seed)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])  # ASCII: a cut anywhere is still UTF-8
    return path


def random_text(size: int, seed: int = 0) -> bytes:
    """``size`` bytes (or a few fewer) of made-up English-like ASCII text, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, 27)  # frequent letters first
    ends = np.cumsum(np.minimum(rng.geometric(0.22, 50_000), 20))  # word lengths 1 to 20
    spelled = "".join(rng.choice(letters, ends[-1], p=weights / weights.sum()))
    vocabulary = [
        spelled[a:b] for a, b in zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True)
    ]
    count = size // 5 + 1  # about 5 bytes per word and its separator
    words = (rng.zipf(1.3, count) - 1) % len(vocabulary)
    separators = rng.choice([" ", ", ", ". ", "; "], count, p=[0.85, 0.08, 0.06, 0.01])
    line_breaks = np.cumsum(rng.integers(5, 16, count // 5 + 1))
    separators[line_breaks[line_breaks < count]] = "\n"
    capitals = rng.random(count) < 0.05
    pieces = []
    for word, separator, capital in zip(words.tolist(), separators, capitals, strict=True):
        text = vocabulary[word]
        pieces += [text.capitalize() if capital else text, separator]
    return "".join(pieces).encode("ascii")[:size]


def measure(path: str | os.PathLike[str], token: str) -> dict[str, Any]:
    """Load ``path`` as ``token`` tokens in a fresh subprocess; its time and memory figures."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), token],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"loading {path} as {token} tokens failed: {last}")
    figures = json.loads(done.stdout)
    size = os.path.getsize(path)
    load = figures["peak_rss"] - figures["rss_before"]
    return {
        "seconds": round(figures["seconds"], 3),
        "tokens": figures["tokens"],
        "vocab_size": figures["vocab_size"],
        "dtype": figures["dtype"],
        "peak_rss_mb": round(figures["peak_rss"] / MB, 1),
        "load_rss_mb": round(load / MB, 1),
        "load_rss_per_file_byte": round(load / size, 2),
    }


def check_space(mb: float, folder: str | os.PathLike[str] | None, flag: str) -> None:
    """Raise :class:`ConfigError` (naming ``flag``) unless an ``mb`` MB text fits on the disk of
    ``folder`` (default the temporary folder) and its loading in memory, before anything is
    written (100,000,000 MB wrote 29 GB before failing)."""
    where = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    size = mb * MB
    free = shutil.disk_usage(where).free
    if size > 0.9 * free:
        raise ConfigError(
            f"{flag} {mb:.12g}: the text would take {size / 1e9:,.1f} GB, but {where} has "
            f"{free / 1e9:,.1f} GB free: give a smaller size"
        )
    memory, needed = available_memory(), LOAD_PER_FILE_BYTE * size
    if needed > 0.8 * memory:
        raise ConfigError(
            f"{flag} {mb:.12g}: loading the text needs about {needed / 1e9:,.1f} GB of memory, "
            f"but {memory / 1e9:,.1f} GB are available: give a smaller size"
        )


def bench_corpus(
    mb: float = 100,
    text: str = "book",
    tokens: tuple[str, ...] = TOKENS,
    seed: int = 0,
    folder: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write an ``mb`` MB text into ``folder`` (default: a temporary one, removed after) and
    :func:`measure` its loading for each of ``tokens``.

    Returns:
        The environment (date, machine, versions), the text (kind, bytes) and one dict of figures
        per token kind (see the module's docstring).
    """
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": cpu_description(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "text": text,
        "seed": seed if text == "random" else None,
    }
    with (
        tempfile.TemporaryDirectory(dir=folder) as tmp,
        signals.removing(lambda: shutil.rmtree(tmp, ignore_errors=True)),
    ):
        path = write_text(Path(tmp) / f"{text}-{mb:g}MB.txt", mb, text, seed)
        result["bytes"] = os.path.getsize(path)
        for token in tokens:
            result[token] = measure(path, token)
    return result


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"{result['date']}  {result['machine']}, Python {result['python']}, "
        f"NumPy {result['numpy']}",
        f"text: {result['text']}, {result['bytes']:,} bytes; load_corpus_time_machine in a fresh "
        f"process per row",
        f"{'token':<6} {'seconds':>8} {'tokens':>12} {'vocab':>8} {'dtype':>7} "
        f"{'peak RSS':>10} {'load RSS':>10} {'load/file':>10}",
    ]
    for token in TOKENS:
        if token in result:
            r = result[token]
            lines.append(
                f"{token:<6} {r['seconds']:>8.2f} {r['tokens']:>12,} {r['vocab_size']:>8,} "
                f"{r['dtype']:>7} {r['peak_rss_mb']:>7.1f} MB {r['load_rss_mb']:>7.1f} MB "
                f"{r['load_rss_per_file_byte']:>9.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143, its
    temporary text removed."""
    with signals.stopping("experiments.bench_corpus"):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench_corpus",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    parser.add_argument("--mb", type=float, default=100.0, help="text size in MB (10^6 bytes)")
    parser.add_argument("--text", choices=TEXTS, default="book")
    parser.add_argument("--tokens", nargs="+", choices=TOKENS, default=list(TOKENS))
    parser.add_argument("--seed", type=int, default=0, help="of the random text")
    parser.add_argument("--folder", default=None, help="where the temporary text is written")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.mb < float("inf"):
        parser.error(f"--mb must be > 0, got {args.mb}")
    try:
        check_space(args.mb, args.folder, "--mb")
        result = bench_corpus(args.mb, args.text, tuple(args.tokens), args.seed, args.folder)
    except (ConfigError, CorpusError, CorpusUnavailableError, RuntimeError) as err:
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(format_result(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0
