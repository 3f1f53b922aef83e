"""The command line of every section script: checks, printing, progress, exit codes.

``python -m experiments.<section> [flags]`` parses its flags into one :class:`RunConfig` per
iteration scheme (:mod:`experiments.flags`), checks all of them (settings, implementation, corpus,
run directories, memory) before the first run starts, then runs them one after the other through
:func:`run_experiment`, printing what the book prints (a continuation of "time traveller" every 10
epochs, then the perplexity and speed line and two continuations) with a progress bar over epochs
on stderr (quiet when stderr is not a terminal).

Exit codes; every ending but success is one line on stderr, never a traceback:

- 0 done;
- 2 bad input (a flag, a missing optional package, a corpus, an unusable ``--out`` or
  ``--resume``), before anything is written;
- 3 diverged: a non-finite or too high training perplexity (the last good checkpoint is kept);
- 130 / 143 interrupted by SIGINT / SIGTERM: the minibatch under way is finished and the last
  completed epoch saved; the line gives the command that resumes the run;
- 1 anything else, e.g. a file that could not be written (the last checkpoint is intact).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from experiments import signals
from experiments.config import ConfigError, RunConfig

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print one line on stderr; return ``code`` (bad input by default)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def stopped(prog: str, err: Exception, stop: signals.StopFlag) -> int:
    """The one line and exit code of a run that ended early (:class:`RunStopped`)."""
    from experiments.runner import RunDiverged, RunInterrupted

    message = " ".join(str(err).split())
    if isinstance(err, RunInterrupted):
        print(f"{prog}: {stop.name}: {message}", file=sys.stderr)
        return stop.exit_code
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_DIVERGED if isinstance(err, RunDiverged) else EXIT_FAILED


def main(section: str, argv: Sequence[str] | None = None) -> int:
    """Run a section script; returns the exit code (module docstring)."""
    prog = f"experiments.{section}"
    with signals.catching(prog) as stop:
        try:
            return _run(section, argv, prog, stop)
        except KeyboardInterrupt:  # only where no handler could be installed (not main thread)
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except MemoryError:
            return fail(prog, "out of memory: lower --hidden, --layers or --batch-size",
                        EXIT_FAILED)  # fmt: skip


def _run(section: str, argv: Sequence[str] | None, prog: str, stop: signals.StopFlag) -> int:
    from experiments import flags, population, runtime
    from experiments.runner import RunStopped, start

    try:
        args = flags.build_parser(section).parse_args(argv)
        runtime.configure(args)  # threads and the compilation cache, before any compute
        configs, resume = flags.configs_from_args(section, args, flags.command_line(section, argv))
        _start_processes(args, configs)
        checked = [
            population.start(c, resume)
            if isinstance(c, population.PopulationConfig)
            else start(c, resume)
            for c in configs
        ]
    except ConfigError as err:
        return fail(prog, str(err))
    if stop():
        print(f"{prog}: {stop.name} during start-up: nothing was written", file=sys.stderr)
        return stop.exit_code
    try:
        for config, prepared in zip(configs, checked, strict=True):
            if isinstance(config, population.PopulationConfig):
                result = run_population_with_progress(config, prepared, stop, resume)
                where = f"population directory: {config.path}"
            else:
                if len(configs) > 1:
                    print(f"# {section}, iteration {config.iter}, {config.impl} -> {config.out}")
                result = run_with_progress(config, prepared, stop=stop, resume=resume)
                where = f"run directory: {result.run_dir}"
            for line in result.report_lines():
                print(line)
            print(where)
    except ConfigError as err:
        return fail(prog, str(err))
    except RunStopped as err:
        return stopped(prog, err, stop)
    return 0


def _start_processes(args: Any, configs: list[Any]) -> None:
    """JAX's multi-process runtime, when ``--coordinator`` or ``$RNN_LM_COORDINATOR`` ask."""
    import os

    if not (args.coordinator or os.environ.get("RNN_LM_COORDINATOR")):
        return
    if any(getattr(c, "base", c).impl != "jax" or not hasattr(c, "members") for c in configs):
        raise ConfigError(
            "--coordinator: only --impl jax populations (--seeds, several --lr or --theta) "
            "run across processes"
        )
    from rnn_jax.sharding import initialize

    try:
        initialize(args.coordinator, args.num_processes, args.process_id)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"--coordinator: JAX's multi-process runtime did not start: {err}"
        ) from None


def run_population_with_progress(config: Any, prepared: Any, stop: Any, resume: bool) -> Any:
    """:func:`run_population` with one progress bar for the whole population on stderr."""
    from tqdm import tqdm

    from experiments.population import run_population

    base, members = config.base, config.members
    sequential = base.impl != "jax"
    total = base.num_epochs * (len(members) if sequential else 1)
    desc = f"{base.section} {base.impl} {base.iter}, {len(members)} runs"
    with tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:  # fmt: skip

        def on_epoch(*args: Any) -> None:
            bar.update(1)
            records = args[1] if isinstance(args[1], list) else [args[1]]
            if records:
                ppl = sorted(r.train_perplexity for r in records)[len(records) // 2]
                bar.set_postfix({"median ppl": f"{ppl:.2f}"}, refresh=False)

        return run_population(config, prepared, on_epoch, stop=stop, resume=resume)


def run_with_progress(
    config: RunConfig, prepared: Any, label: str = "", stop: Any = None, resume: bool = False
) -> Any:
    """:func:`run_experiment` with a tqdm bar on stderr and the book's samples on stdout.

    ``label`` prefixes each printed sample (``compare`` names the implementation).
    """
    from tqdm import tqdm

    from experiments.records import EpochRecord
    from experiments.runner import run_experiment

    desc = f"{config.section} {config.impl} {config.iter}"
    done = config.resumed_at[-1] if resume else 0
    with tqdm(total=config.num_epochs, initial=done, desc=desc, unit="epoch", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:  # fmt: skip

        def on_epoch(record: EpochRecord) -> None:
            if record.sample is not None:
                bar.write(f"{label}{record.sample}", file=sys.stdout)
            postfix = {"ppl": f"{record.train_perplexity:.2f}"}
            if record.val_perplexity is not None:
                postfix["val"] = f"{record.val_perplexity:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

        return run_experiment(config, on_epoch, checked=prepared, stop=stop, resume=resume)
