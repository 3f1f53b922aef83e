"""The command of every section script: checks, printing, progress, exit codes.

``python -m experiments.<section> [flags]`` parses its flags (:mod:`experiments.run.flags`) into
one :class:`RunConfig` per iteration scheme, or a population of them (:func:`configs_from_args`),
checks all of them (settings, implementation, corpus, run directories, memory) before the first
run starts, then runs them one after the other through :func:`run_experiment`, printing what the
book prints (a continuation of "time traveller" every 10 epochs, then the perplexity and speed
line and two continuations) with a progress bar over epochs on stderr (quiet when stderr is not a
terminal).

Exit codes: :mod:`experiments.run.cli`; every ending but success is one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.run import lock, rundir, signals
from experiments.run.cli import EXIT_FAILED, fail, run_with_progress, stopped
from experiments.run.config import SECTIONS, ConfigError, default_run_dir, section_config


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
            return fail(
                prog, "out of memory: lower --hidden, --layers or --batch-size", EXIT_FAILED
            )


def _run(section: str, argv: Sequence[str] | None, prog: str, stop: signals.StopFlag) -> int:
    from experiments.populations import population
    from experiments.run import flags, runtime
    from experiments.run.runner import start

    with contextlib.ExitStack() as locks:  # every run directory, for the command's whole life
        try:
            args = flags.build_parser(section).parse_args(argv)
            runtime.configure(args)  # threads and the compilation cache, before any compute
            coordinated = bool(args.coordinator or os.environ.get("RNN_LM_COORDINATOR"))
            if args.resume is not None and not coordinated:  # before the run is read
                locks.enter_context(lock.locked(args.resume, create=False))
            configs, resume = configs_from_args(section, args, command_line(section, argv))
            _start_processes(args, configs)
            if coordinated or not resume:
                name = rundir.LOCK + (f".{_process_index()}" if coordinated else "")
                for c in configs:
                    out = c.path if isinstance(c, population.PopulationConfig) else c.out
                    locks.enter_context(lock.locked(out, create=not resume, name=name))
            checked = [
                population.start(c, resume)
                if isinstance(c, population.PopulationConfig)
                else start(c, resume)
                for c in configs
            ]
        except ConfigError as err:
            return fail(prog, str(err))
        return _train(configs, checked, resume, section, prog, stop)


def _process_index() -> int:
    import jax

    return jax.process_index()


def _train(
    configs: list[Any],
    checked: list[Any],
    resume: bool,
    section: str,
    prog: str,
    stop: signals.StopFlag,
) -> int:
    """Train every run of the command, one after the other, printing the book's lines."""
    from experiments.populations import population
    from experiments.populations.runner import run_population_with_progress
    from experiments.run.loop import RunStopped

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


def configs_from_args(
    section: str, args: argparse.Namespace, command: str
) -> tuple[list[Any], bool]:
    """The runs of one parsed command line (two for ``--iter both``), and whether they resume.

    Each is a :class:`RunConfig`, or a :class:`PopulationConfig` for a population (``--seeds``,
    or several ``--lr``/``--theta``). With ``--resume DIR`` the one run is DIR's, from its
    checkpoint (:func:`resume_config`).
    """
    from experiments.populations.population import PopulationConfig, resume_population
    from experiments.run import flags
    from experiments.run.runner import resume_config  # (heavy imports: after the signal handlers)
    from numpy_ref.population import grid

    base = flags.overrides_from_args(args)
    population = flags.is_population(args)
    if args.seeds is not None and args.seed is not None:
        raise ConfigError("--seed and --seeds: give one of them")
    if args.resume is not None:
        given = {**base, "iter": args.iter, "out": args.out}
        if args.iter == "both":
            raise ConfigError("--resume continues one run directory: drop --iter both")
        from experiments.run.rundir import POPULATION, is_population_dir

        if is_population_dir(Path(args.resume)) or (Path(args.resume) / POPULATION).exists():
            pc = resume_population(args.resume, section, given)
            _check_out(args)
            _check_members(pc, args)
            return [pc], True
        config = resume_config(args.resume, section, given)  # (what it cannot resume, first)
        lists = [flag for flag, value in (("--seeds", args.seeds), ("--lr", args.lr),
                                          ("--theta", args.theta))
                 if value is not None and (flag == "--seeds" or len(value) > 1)]  # fmt: skip
        if lists:
            raise ConfigError(
                f"--resume {args.resume} continues a single run: {' and '.join(lists)} would make "
                f"a population; drop {'them' if len(lists) > 1 else 'it'}"
            )
        _check_out(args)
        return [config], True
    iter_ = args.iter or ("both" if len(SECTIONS[section].iters) > 1 else "seq")
    iters = ("seq", "random") if iter_ == "both" else (iter_,)
    base["command"] = command
    impl = base["impl"] or "numpy"
    configs: list[Any] = []
    for name in iters:
        out = args.out
        if out is None:  # name each run's iteration
            out = default_run_dir(section, name, impl, named=len(iters) > 1, population=population)
        elif len(iters) > 1:
            out = str(Path(out) / name)
        config = section_config(section, iter=name, out=out, **base)
        if population:
            members = grid(
                args.seeds or [config.seed], args.lr or [config.lr], args.theta or [config.theta]
            )
            config = PopulationConfig(config, tuple(members))
        configs.append(config)
    return configs, False


def _check_out(args: argparse.Namespace) -> None:
    """``--out`` given to ``--resume DIR`` must be DIR (a resumed run is written in place)."""
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError(
            f"--resume {args.resume} continues the run in {args.resume}; --out {args.out} is "
            f"another folder: drop --out (or copy the run directory there and resume that)"
        )


def _check_members(pc: Any, args: argparse.Namespace) -> None:
    """``--seed(s)``, ``--lr`` and ``--theta`` given to ``--resume`` of a population must name
    its members' values (a resumed population keeps its members)."""
    members = {"--seeds": {m.seed for m in pc.members}, "--lr": {m.lr for m in pc.members},
               "--theta": {m.theta for m in pc.members}}  # fmt: skip
    given = {"--seeds": args.seeds if args.seeds is not None else
             (None if args.seed is None else [args.seed]),
             "--lr": args.lr, "--theta": args.theta}  # fmt: skip
    for flag, values in given.items():
        if values is not None and set(values) != members[flag]:
            have = ",".join(f"{v:g}" for v in sorted(members[flag]))
            raise ConfigError(
                f"--resume {pc.path}: {flag} {','.join(f'{v:g}' for v in values)} differs from the "
                f"population's {have}; a resumed population keeps its members: drop {flag}"
            )


def command_line(section: str, argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", f"experiments.{section}", *args])
