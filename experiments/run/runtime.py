"""Process-wide settings of a command: how many threads compute, JAX's compilation cache, XLA's
compiler flags, glibc's allocator, and whether the machine has the memory a run needs
(:func:`check_memory`).

Every command calls :func:`configure` right after parsing its flags
(:func:`experiments.run.flags.add_runtime_flags`), before
NumPy's BLAS, PyTorch or JAX have run anything:

- ``--threads N``: NumPy's BLAS and every OpenMP pool (threadpoolctl), PyTorch's intra-op pool
  (``torch.set_num_threads``) and XLA's CPU pools (``NPROC``, read by XLA when JAX starts its CPU
  backend) use N threads. Left out (or ``--threads 0``), the policy of docs/performance.md
  applies, :func:`default_threads`: half the cores, at least one, for every library alike. A
  thread pool on a core another process needs loses far more than that core
  (tools/bench_threads.py measures it). The count must not depend on the moment: results
  differ in the last bits between thread counts (NumPy's and XLA's), and a resumed run must end
  bit-identical to an uninterrupted one: resume with the ``--threads`` of the run.
- ``--no-compile-cache``: JAX's persistent compilation cache stays off. By default it is on, in
  ``$XDG_CACHE_HOME/rnn-lm/jax`` (``~/.cache/rnn-lm/jax``), beside the corpus cache of
  :func:`numpy_ref.corpus.cache_dir`: a second run of a command loads its compiled steps instead
  of compiling them again. Every compilation is cached, however short (JAX's default skips those
  under a second, which are all of ours).
- XLA's compiler: LLVM's optimisation level 2 (``--xla_backend_optimization_level=2`` in
  ``XLA_FLAGS``, :func:`set_xla_flags`) instead of XLA's default 3: a third less compile time
  for the same step time (``python -m tools.bench_probes compile``, docs/performance.md).
  A level given in ``XLA_FLAGS`` already is left alone.
- The allocator: on glibc (Linux), :func:`keep_freed_memory` tells ``malloc`` to keep the memory
  a program frees for its next allocations instead of handing it back to the system. XLA frees
  a step's temporary buffers after every step; by default glibc mapped them anew each time, and
  the deep LSTM's step touched ~10,700 fresh pages (a page fault each: ~100 ms a step instead of
  ~76 here, ``python -m tools.bench_probes malloc``). Every library in the process gets it
  alike.

Where JAX is already imported, its configuration is updated; otherwise the environment variables
that JAX reads when it is imported are set, so that numpy-only commands do not import JAX.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path
from typing import Any

from experiments.run.config import ConfigError, RunConfig
from numpy_ref.corpus import cache_dir

AUTO = 0  # --threads 0: the policy, default_threads()


def compile_cache_dir() -> Path:
    """Where JAX's persistent compilation cache lives: ``cache_dir() / "jax"``."""
    return cache_dir() / "jax"


def configure(args: argparse.Namespace | None = None, **settings: Any) -> dict[str, Any]:
    """Apply ``--threads`` and the compilation cache from parsed flags (or keyword settings).

    Args:
        args: a namespace with ``threads`` and ``compile_cache`` (either may be missing).
        settings: ``threads=``, ``compile_cache=``, ``cache_path=``, overriding ``args``.

    Returns:
        What was applied: ``{"threads": N, "policy": "--threads" or "the default, ...",
        "compile_cache": path or None}``.
    """
    values = {"threads": AUTO, "compile_cache": True, "cache_path": None}
    if args is not None:
        values.update(
            {k: getattr(args, k) for k in ("threads", "compile_cache") if hasattr(args, k)}
        )
    values.update(settings)
    if values["threads"] > max_threads():
        raise ConfigError(
            f"--threads {values['threads']}: at most {max_threads()} here; 0 uses half the cores"
        )
    threads = values["threads"] or default_threads()
    set_threads(threads)
    set_xla_flags()
    kept = keep_freed_memory()
    path = None
    if values["compile_cache"]:
        path = enable_compile_cache(values["cache_path"])
    policy = "--threads" if values["threads"] else "the default, half the cores"
    return {
        "threads": threads,
        "policy": policy,
        "compile_cache": path and str(path),
        "malloc": "keeps freed memory" if kept else "the default",
    }


THREADS_PER_CORE = 8  # --threads above this many per core is refused (max_threads)
MIN_THREADS_LIMIT = 64  # ... unless below this many


def max_threads() -> int:
    """The most ``--threads`` accepted: :data:`THREADS_PER_CORE` per core this process may run
    on, or :data:`MIN_THREADS_LIMIT` on a small machine (so that a run's count can be repeated
    on another one to resume it bit-identically)."""
    return max(MIN_THREADS_LIMIT, THREADS_PER_CORE * _cores())


def _cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def default_threads() -> int:
    """The policy (docs/performance.md): half the cores this process may run on, at least 1."""
    return max(1, _cores() // 2)


def set_threads(threads: int) -> None:
    """``threads`` threads for BLAS, OpenMP, PyTorch and XLA's CPU pools."""
    os.environ["NPROC"] = str(threads)  # XLA's CPU client sizes its thread pools from it
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)  # pools started after this point, subprocesses
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # the pools already loaded (NumPy's OpenBLAS at least)
    if sys.modules.get("torch") is not None:  # else OMP_NUM_THREADS applies when it is imported
        sys.modules["torch"].set_num_threads(threads)


XLA_FLAGS = ("--xla_backend_optimization_level=2",)  # see the module docstring


def set_xla_flags() -> str:
    """Add :data:`XLA_FLAGS` to the environment's ``XLA_FLAGS``, each unless a value of that
    flag is there already. XLA reads them when JAX starts its backend (at the first computation,
    whether or not JAX is imported yet). Returns the resulting ``XLA_FLAGS``."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    names = {flag.split("=")[0] for flag in flags}
    flags += [flag for flag in XLA_FLAGS if flag.split("=")[0] not in names]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    return os.environ["XLA_FLAGS"]


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4  # glibc's malloc.h
_HEAP = 64 << 20  # the size of a thread's heap in glibc's malloc (64-bit)


def keep_freed_memory() -> bool:
    """glibc's ``malloc`` keeps freed memory for reuse: no allocation is its own mapping
    (``M_MMAP_MAX`` 0), a heap is never trimmed (``M_TRIM_THRESHOLD`` at its largest) and a
    thread's heap that empties is kept (``M_TOP_PAD`` of one heap; glibc hands such a heap back
    whatever the trim threshold), so a buffer freed after one step is the next step's, without
    new page faults. Each thread keeps its own heap (limiting the heaps to one,
    ``M_ARENA_MAX``, also ends the faults, but XLA's compiler threads then wait for each other:
    a third more compile time). The peak memory is the same; what a process once used stays
    reserved for it until it exits. Call it before the libraries allocate much.

    Returns:
        Whether it applied (False off glibc, where nothing changes).
    """
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt ignores these)
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, _HEAP))
    return all([libc.mallopt(option, value) for option, value in settings])


def enable_compile_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """JAX's persistent compilation cache on, in ``path`` (default :func:`compile_cache_dir`)."""
    folder = Path(path) if path is not None else compile_cache_dir()
    options = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    if sys.modules.get("jax") is not None:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        for name, value in options.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()  # JAX opens its cache once: open it again, here
    else:
        for name, value in options.items():
            os.environ[name.upper()] = str(value)
    _watch_compile_cache(folder)
    return folder


_BAD_ENTRY = "Error reading persistent compilation cache entry"  # JAX's warning, jax/_src/compiler


def _watch_compile_cache(folder: Path) -> None:
    """Answer JAX's warning about a cache entry it cannot read (one cut short by a full disk) by
    removing the damaged entries: JAX then compiles and writes the entry anew, once. JAX itself
    never replaces an entry that exists, so without this every later run warned and compiled
    again. One line on stderr instead of JAX's warning."""
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "compile_cache", None) is not None:
        shown = shown.__wrapped__  # type: ignore[attr-defined]  (configured twice: one hook)

    def showwarning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if _BAD_ENTRY not in str(message):
            shown(message, category, *args, **kwargs)
            return
        removed = len(remove_damaged_entries(folder))
        print(
            f"compile cache: removed {removed} damaged entr{'y' if removed == 1 else 'ies'} "
            f"in {folder} (cut short, e.g. by a full disk); compiling again, once",
            file=sys.stderr,
        )

    showwarning.compile_cache = folder  # type: ignore[attr-defined]
    showwarning.__wrapped__ = shown  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def remove_damaged_entries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the entries of JAX's compilation cache in ``folder`` that do not decompress (cut
    short), with their access-time files; returns the entries deleted."""
    from jax._src.compilation_cache import decompress_executable  # the cache's own format

    removed = []
    for entry in sorted(Path(folder).glob("*-cache")):
        try:
            decompress_executable(entry.read_bytes())
        except OSError:
            continue  # unreadable now (permissions, gone): not ours to judge
        except Exception:  # zstd's and zlib's errors for a cut-short frame, whichever JAX used
            entry.unlink(missing_ok=True)
            entry.with_name(entry.name[: -len("-cache")] + "-atime").unlink(missing_ok=True)
            removed.append(entry)
    return removed


def disable_compile_cache() -> None:
    """Turn the persistent compilation cache off again (JAX imported or not)."""
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    if sys.modules.get("jax") is not None:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()


def thread_counts() -> dict[str, Any]:
    """The thread counts in force, per library, as they report them (for the bench's header)."""
    from threadpoolctl import threadpool_info

    counts: dict[str, Any] = {}
    for pool in threadpool_info():
        counts[f"{pool['user_api']}:{pool['internal_api']}"] = pool["num_threads"]
    if sys.modules.get("torch") is not None:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    counts["xla"] = int(os.environ.get("NPROC", "0")) or len(os.sched_getaffinity(0))
    return counts


def memory_needed(config: RunConfig, vocab_size: int, members: int = 1) -> float:
    """A generous estimate of a run's memory in bytes: parameters, gradients and copies, and the
    activations of one minibatch (gates, caches and their gradients, logits)."""
    sizes = (config.num_hiddens, config.num_layers, config.batch_size, config.num_steps)
    return members * model_memory(config.kind, vocab_size, *sizes)


def model_memory(kind: str, V: int, H: int, L: int, B: int, T: int) -> float:
    """A generous estimate in bytes of one model's training step (:func:`memory_needed`): the
    parameters, gradients and copies, and the activations of one (B, T) minibatch, float64.
    Counted in exact integers and capped at 10^300 bytes, so that an absurd size (``--hidden``
    of 400 digits) gives an absurd figure, not an overflow."""
    G = {"rnn": 1, "gru": 3, "lstm": 4}.get(kind, 4)
    params = L * G * (H * (V + H) + H * (H + H + 1)) + H * V + V
    activations = B * T * (6 * L * G * H + 3 * V)
    return 8.0 * min(6 * params + 2 * activations, 10**300)  # float64 at worst


def check_available(needed: float, cause: str) -> None:
    """Raise :class:`ConfigError` when ``needed`` bytes exceed 80% of the available memory;
    ``cause`` names the flags that set the size, with their values (``--hidden 10000``)."""
    available = available_memory()
    if needed > 0.8 * available:
        raise ConfigError(
            f"{cause} needs about {needed / 2**30:,.1f} GiB of memory, but "
            f"{available / 2**30:,.1f} GiB are available: lower them"
        )


def available_memory() -> float:
    """Bytes of memory available now (Linux's MemAvailable; the physical size elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(config: RunConfig, vocab_size: int, members: int = 1) -> None:
    needed, available = memory_needed(config, vocab_size, members), available_memory()
    if needed > 0.8 * available and members > 1:
        raise ConfigError(
            f"this population needs about {needed / 2**30:,.1f} GiB of memory, but "
            f"{available / 2**30:,.1f} GiB are available: the cause is its {members:,} members "
            f"(--seeds, times the values of --lr and --theta), {needed / members / 2**30:,.2f} "
            f"GiB each: give fewer seeds (or lower --hidden, --layers, --batch-size)"
        )
    if needed > 0.8 * available:
        raise ConfigError(
            f"this run needs about {needed / 2**30:,.1f} GiB of memory (--hidden "
            f"{config.num_hiddens}, --layers {config.num_layers}, --batch-size "
            f"{config.batch_size}), but {available / 2**30:,.1f} GiB are available: lower them"
        )
