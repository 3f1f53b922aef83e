"""Populations of runs: seeds x learning rates x thetas in one command, results as distributions.

A population's directory holds ``population.json`` (its settings and members), one run directory
per member (``seed3-lr1-theta1/``, a run like any other: config, metrics, checkpoint, summary),
and, once the members are done, ``summary.json`` (per setting (lr, theta): n, mean, standard
deviation, min and max of the final train and validation perplexity and of the median over the
last 10% of epochs; the aggregate tokens/s) and ``spread.png`` (per epoch and setting: the
median and the min-max band of the members).

``--impl jax`` trains the whole population as one compiled program (:mod:`rnn_jax.epoch`,
driven by :mod:`experiments.populations.population_jax`); numpy and torch run the members one after
another, each the single run with its settings (:mod:`experiments.populations.runner` chooses).
Both are durable as single runs are: ``--resume DIR [--epochs N]`` brings every member to the
population's epochs (N, when given: a finished population trains further; fewer than a member has
done are refused), after reading every member's checkpoint (:func:`done_epochs`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from experiments.populations import checkpoint
from experiments.populations.stats import Spread
from experiments.run import rundir
from experiments.run.config import SECTIONS, ConfigError, RunConfig
from experiments.run.records import EpochRecord, RunResult, late_median
from numpy_ref.population import Member

SUMMARY_KIND = "population"
SPREAD = rundir.SPREAD


@dataclass(frozen=True)
class PopulationConfig:
    """A population: the settings every member shares (``base``, whose ``out`` is the
    population's directory) and its members (seed, lr, theta)."""

    base: RunConfig
    members: tuple[Member, ...]

    def member_config(self, member: Member) -> RunConfig:
        return replace(self.base, seed=member.seed, lr=member.lr, theta=member.theta,
                       out=str(Path(self.base.out) / member.name))  # fmt: skip

    @property
    def path(self) -> Path:
        return Path(self.base.out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": rundir.POPULATION_FORMAT,
            "config": self.base.to_dict(),
            "members": [{"seed": m.seed, "lr": m.lr, "theta": m.theta, "name": m.name}
                        for m in self.members],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PopulationConfig:
        members = tuple(Member(int(m["seed"]), float(m["lr"]), float(m["theta"]))
                        for m in d["members"])  # fmt: skip
        return cls(RunConfig.from_dict(d["config"]), members)


@dataclass
class PopulationResult:
    """What a population produced: one :class:`RunResult` per finished member, the diverged
    members' names, and the aggregate summary."""

    config: PopulationConfig
    results: dict[str, RunResult] = field(default_factory=dict)
    diverged: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tokens_per_sec: float = 0.0  # the whole population's, median over epochs

    def report_lines(self) -> list[str]:
        if not self.summary:  # a process other than the first, across processes
            return [f"this process's members are written; the first process sums the "
                    f"population up in {self.config.path / rundir.SUMMARY}"]  # fmt: skip
        lines = []
        for setting in self.summary.get("settings", []):
            train, late = setting["train_perplexity"], setting["train_perplexity_late_median"]
            val = setting["val_perplexity"]
            line = (f"lr {setting['lr']:g}, theta {setting['theta']:g}: final perplexity "
                    f"{Spread(**train).text()}, median of the last 10% "
                    f"{Spread(**late).text()}")  # fmt: skip
            if val["n"]:
                line += f", validation {Spread(**val).text()}"
            lines.append(line)
        lines.append(f"{self.tokens_per_sec:.1f} tokens/sec in all ({self.config.base.impl})")
        if self.diverged:
            lines.append(f"diverged: {', '.join(self.diverged)}")
        return lines


def aggregate(pc: PopulationConfig, results: dict[str, RunResult],
              diverged: Sequence[str], tokens_per_sec: float) -> dict[str, Any]:  # fmt: skip
    """``summary.json`` of a population: per setting, the spread of its finished members."""
    by_setting: dict[tuple[float, float], list[RunResult]] = defaultdict(list)
    for member in pc.members:
        if member.name in results:
            by_setting[member.setting].append(results[member.name])
    settings = []
    for (lr, theta), runs in by_setting.items():
        vals = [r.final.val_perplexity for r in runs if r.final.val_perplexity is not None]
        settings.append({
            "lr": lr, "theta": theta,
            "seeds": [r.config.seed for r in runs],
            "train_perplexity": Spread.of([r.final.train_perplexity for r in runs]).to_dict(),
            "val_perplexity": Spread.of(vals).to_dict(),
            "train_perplexity_late_median": Spread.of(
                [late_median([h.train_perplexity for h in r.history]) for r in runs]).to_dict(),
        })  # fmt: skip
    base, first = pc.base, next(iter(results.values()), None)
    section = SECTIONS[base.section]
    return {
        "kind": SUMMARY_KIND,
        "section": base.section,
        "book_section": section.book,
        "title": section.title,
        "impl": base.impl,
        "iter": base.iter,
        "epochs": base.num_epochs,
        "members": [m.name for m in pc.members],
        "diverged": list(diverged),
        "settings": settings,
        "tokens_per_sec": tokens_per_sec,
        "device": first.summary.get("device") if first else None,
        "machine": first.summary.get("machine") if first else None,
        "versions": first.summary.get("versions") if first else None,
        "torch_model": first.summary.get("torch_model") if first else None,
        "date": first.summary.get("date") if first else None,
        "command": base.command,
    }


def finish(pc: PopulationConfig, results: dict[str, RunResult], diverged: Sequence[str],
           tokens_per_sec: float, folder: Path) -> PopulationResult:  # fmt: skip
    """Write the aggregate ``summary.json`` and ``spread.png`` into ``folder``."""
    from experiments.run.plots import plot_spread

    result = PopulationResult(pc, results, list(diverged), tokens_per_sec=tokens_per_sec)
    result.summary = aggregate(pc, results, diverged, tokens_per_sec)
    rundir.write_json(folder / rundir.SUMMARY, result.summary)
    histories = defaultdict(list)
    for member in pc.members:
        if member.name in results:
            histories[member.setting].append([h.to_dict() for h in results[member.name].history])
    section = SECTIONS[pc.base.section]
    plot_spread(histories, folder / SPREAD, f"d2l {section.book} {section.title}: {pc.base.impl}, "
                f"{pc.base.iter}, {len(results)} runs")  # fmt: skip
    return result


def run_sequential(
    pc: PopulationConfig,
    on_epoch: Callable[[str, EpochRecord], None] | None,
    stop: Callable[[], bool] | None,
    resume: bool,
    checked: Any,
) -> PopulationResult:
    """numpy and torch: the members one after another, each a durable single run."""
    from experiments.run.loop import RunDiverged, RunInterrupted
    from experiments.run.runner import Data, load_finished, run_experiment
    from numpy_ref.data import SeqDataLoader

    backend, data = checked
    if pc.base.data_sha1 is None:  # the text trained on, recorded
        pc = PopulationConfig(replace(pc.base, data_sha1=data.sha1), pc.members)

    folder = pc.path
    names = (rundir.POPULATION, rundir.SUMMARY, SPREAD, *(m.name for m in pc.members))
    if resume:  # the aggregate described the members as they were: it is written anew at the end
        run = rundir.RunDir.resumed(folder, names)
        for name in (rundir.SUMMARY, SPREAD):
            (folder / name).unlink(missing_ok=True)
    else:  # staged until the first member's first checkpoint
        run = rundir.RunDir.create(folder, pc.base.overwrite, names)
    rundir.write_json(run.folder / rundir.POPULATION, pc.to_dict())
    results, diverged, speeds = {}, [], []
    for member in pc.members:
        config = pc.member_config(member)
        path = Path(config.out)
        member_run = rundir.RunDir.member(run, member.name) if run.pending else None
        member_resume = resume and (path / rundir.CHECKPOINT).is_file()
        if member_resume:
            from experiments.run.runner import resume_config

            finished = load_finished(path)
            if finished is not None and len(finished.history) == pc.base.num_epochs:
                results[member.name] = finished
                continue
            config = resume_config(path, config.section, {"num_epochs": pc.base.num_epochs})
            config = replace(config, data_path=pc.base.data_path, data_sha1=pc.base.data_sha1)
        elif resume and path.is_dir():  # started, killed before its first checkpoint
            config = replace(config, overwrite=True)
        loader = SeqDataLoader(
            data.train.corpus,
            config.batch_size,
            config.num_steps,
            config.loader_random,
            config.seed,
        )  # the member's own minibatches
        try:
            result = run_experiment(
                config,
                None if on_epoch is None else (lambda r, name=member.name: on_epoch(name, r)),
                checked=(backend, Data(loader, data.val_corpus, data.vocab)),
                stop=stop,
                resume=member_resume,
                run=member_run,
            )
        except RunDiverged:
            diverged.append(member.name)
            continue
        except RunInterrupted as err:  # resumed as a population, not as the member alone
            if run.pending:  # before any checkpoint: nothing stays (the message says so)
                run.discard()
                raise
            message = str(err).replace(f"--resume {path}", f"--resume {folder}")
            raise RunInterrupted(f"{member.name}: {message}") from None
        except BaseException:
            if run.pending:
                run.discard()
            raise
        results[member.name] = result
        speeds.append(result.summary["tokens_per_sec_median"])
    run.promote()  # (when every member diverged before its first checkpoint)
    return finish(pc, results, diverged, float(np.median(speeds)) if speeds else 0.0, folder)


def check(pc: PopulationConfig, resume: bool) -> None:
    """The population's directory, before anything runs."""
    path = pc.path
    if resume:
        if not rundir.is_population_dir(path):
            raise ConfigError(f"--resume {path}: no {rundir.POPULATION} there: nothing to resume")
        for folder in (path, *(path / m.name for m in pc.members if (path / m.name).is_dir())):
            rundir.check_writable(folder, "--resume")
        return
    rundir.check_run_dir(path, pc.base.overwrite)
    names = [m.name for m in pc.members]
    if len(set(names)) != len(names):
        raise ConfigError("--seeds/--lr/--theta name some member twice: give distinct values")


def resume_population(path: str | Path, section: str, given: dict[str, Any]) -> PopulationConfig:
    """The population saved in ``path`` with the changes ``--resume`` allows (as a single run's,
    :func:`experiments.run.runner.resume_config`)."""
    import json

    from experiments.run.runner import RESUMABLE

    path = Path(path)
    try:
        pc = PopulationConfig.from_dict(
            json.loads((path / rundir.POPULATION).read_text(encoding="utf-8"))
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--resume {path}: {rundir.POPULATION} is damaged ({err})") from None
    if pc.base.section != section:
        raise ConfigError(
            f"--resume {path} is a {pc.base.section} population: resume it with "
            f"python -m experiments.{pc.base.section} --resume {path}"
        )
    member_values = {"seed", "lr", "theta"}
    for name, value in given.items():
        if value is None or name in RESUMABLE or name in ("out", "command", "overwrite"):
            continue
        if name == "data_path":  # given on purpose: checked by its vocabulary (start)
            continue
        if name not in member_values and getattr(pc.base, name) != value:
            raise ConfigError(
                f"--resume {path}: {name} {value!r} conflicts with the population's {name} "
                f"{getattr(pc.base, name)!r}; a resumed run keeps its settings: drop the flag"
            )
    changes = {k: given[k] for k in RESUMABLE if given.get(k) is not None}
    if given.get("data_path") is not None:  # another text on purpose: its SHA-1 recorded anew
        changes.update(data_path=given["data_path"], data_sha1=None)
    pc = PopulationConfig(replace(pc.base, out=str(path), overwrite=False, **changes),
                          pc.members)  # fmt: skip
    done = done_epochs(pc)
    total = pc.base.num_epochs
    if max(done.values(), default=0) > total:
        name, most = max(done.items(), key=lambda item: item[1])
        raise ConfigError(
            f"--resume {path}: member {name} has done {most} epochs, more than --epochs {total}: "
            f"a resumed population only trains further; pass --epochs N with N >= {most}"
        )
    if done and min(done.values()) >= total and _finished(pc):
        raise ConfigError(
            f"--resume {path}: every member has done its {total} epochs: nothing to resume; "
            f"pass --epochs N with N > {total} to train them further"
        )
    return pc


def done_epochs(pc: PopulationConfig) -> dict[str, int]:
    """The epochs each member of the population in ``pc.path`` has saved, its checkpoints read
    whole (JAX: the population's own ``population.<process>.npz``; numpy, torch: each member's
    ``checkpoint.npz``; a member without one has done none).

    Raises:
        ConfigError: a checkpoint that does not read (truncated, damaged, unreadable), named.
    """
    from numpy_ref.checkpoint import CheckpointError, load_checkpoint

    path = pc.path
    if pc.base.impl == "jax":
        found = sorted(path.glob("population.*.npz"))
        if not found:
            raise ConfigError(
                f"--resume {path}: no population.0.npz there (the population stopped before its "
                f"first checkpoint): nothing to resume; start it anew with --overwrite"
            )
        done: dict[str, int] = {}
        for file in found:
            epoch, _, members = checkpoint.read(file)
            done.update({m["name"]: epoch for m in members if m["name"] is not None})
        return done
    done = {}
    for member in pc.members:
        file = path / member.name / rundir.CHECKPOINT
        if not file.exists():
            continue
        try:
            done[member.name] = load_checkpoint(file).epoch
        except (CheckpointError, OSError) as err:
            raise ConfigError(f"--resume {path}: member {member.name}: {err}") from None
    return done


def _finished(pc: PopulationConfig) -> bool:
    """Whether the population's aggregate ``summary.json`` describes its members as they are."""
    from experiments.run.runner import load_finished

    if not (pc.path / rundir.SUMMARY).is_file():
        return False
    for member in pc.members:
        result = load_finished(pc.path / member.name)
        if result is not None and len(result.history) != pc.base.num_epochs:
            return False
    return True


def start(pc: PopulationConfig, resume: bool) -> tuple[Any, Any]:
    """A population's checks before anything runs: settings, its directory, the implementation,
    the corpus, and the memory of every member at once."""
    from experiments.run.backends import make_backend
    from experiments.run.config import validate
    from experiments.run.runner import load_data
    from experiments.run.runtime import check_memory

    validate(pc.base)
    check(pc, resume)
    backend = make_backend(pc.base)
    data = load_data(pc.base)
    if resume:
        from experiments.run.runner import check_resumed_corpus

        saved = [pc.path / m.name / rundir.CHECKPOINT for m in pc.members]
        for checkpoint in [file for file in saved if file.is_file()][:1]:
            check_resumed_corpus(pc.base, data, checkpoint)
    members = len(pc.members) if pc.base.impl == "jax" else 1
    check_memory(pc.base, len(data.vocab), members)
    return backend, data
