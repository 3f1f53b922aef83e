"""A population trained by JAX as one program: the host loop of every run
(:mod:`experiments.run.loop`) over a group of all the members (:mod:`rnn_jax.epoch`).

Every member gets the files of a single run in its own directory (config, metrics, checkpoint,
summary; its plot at the end). The population's checkpoint is one file per process
(``population.<process>.npz``, written atomically after epoch 1, every ``checkpoint_every``
epochs and after the last): the parameters of the process's members, each member's history and
loader state, and which members still train, so that ``--resume`` restarts every member from the
same epoch; the members' own ``checkpoint.npz`` are written after the last. A member whose
training perplexity stops being finite or exceeds the limit is frozen (it diverged) while the
others go on.

Across processes (``jax.distributed``), each process loads and writes its own members; all share
the run directory (a shared file system), and the first process writes the aggregate once every
process has written its members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from experiments.populations import checkpoint
from experiments.populations.checkpoint import checkpoint_name
from experiments.populations.population import (
    SPREAD,
    PopulationConfig,
    PopulationResult,
    finish,
)
from experiments.run import loop, rundir
from experiments.run.loop import RunDiverged, RunWriteError
from experiments.run.records import EpochRecord
from experiments.run.runner import load_finished, model_spec, title
from numpy_ref.data import SeqDataLoader
from numpy_ref.spec import init_params


def _run_dir(pc: PopulationConfig, names: tuple[str, ...], resume: bool) -> rundir.RunDir:
    """The population's directory: staged over an earlier result in one process; new across
    processes (no staging there)."""
    import jax

    if resume:
        return rundir.RunDir.resumed(pc.path, names=names)
    if jax.process_count() == 1:
        return rundir.RunDir.create(pc.path, pc.base.overwrite, names=names)
    if jax.process_index() == 0:
        rundir.RunDir.create(pc.path, overwrite=False, names=names, stage=False)
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("rnn-lm: run directory created")
    return rundir.RunDir(pc.path, staged=False, names=names)


def _placement(pc: PopulationConfig, backend: Any) -> Any:
    """The member axis over every device of the backend's platform (of every process)."""
    import jax

    from rnn_jax import sharding
    from rnn_jax.epoch import Placement

    devices = jax.devices(backend.jax_device.platform)
    if len(devices) == 1:
        return Placement(None, len(pc.members), range(len(pc.members)), backend.jax_device)
    mesh = sharding.make_mesh(devices=devices)
    count = sharding.padded_count(len(pc.members), mesh)
    return Placement(mesh, count, sharding.local_member_range(count, mesh))


def run_jax_population(
    pc: PopulationConfig,
    backend: Any,
    data: Any,
    on_epoch: Callable[[int, list[EpochRecord]], None] | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> PopulationResult:
    """Train the population (module docstring); raises RunInterrupted, RunDiverged (after the
    other members finished, when some diverged) or RunWriteError."""
    import jax

    if pc.base.data_sha1 is None:  # the text trained on, recorded
        pc = PopulationConfig(replace(pc.base, data_sha1=data.sha1), pc.members)
    base, process = pc.base, jax.process_index()
    spec = model_spec(base, len(data.vocab))
    place = _placement(pc, backend)
    settings = [pc.members[k] if k < len(pc.members) else None for k in place.local]  # None: pad
    real = [m for m in settings if m is not None]
    run = _run_dir(pc, (checkpoint_name(process), rundir.POPULATION, rundir.SUMMARY, SPREAD,
                        *(m.name for m in real)), resume)  # fmt: skip
    B, T = base.batch_size, base.num_steps
    members = [loop.Member(pc.member_config(m or real[0]), None if m is None else Path(m.name),
                           SeqDataLoader(data.train.corpus, B, T, base.loader_random,
                                         (m or real[0]).seed), alive=m is not None)
               for m in settings]  # fmt: skip
    ckpt = run.folder / checkpoint_name(process)
    if resume:
        done, params, saved = checkpoint.read(ckpt)
        for m, info in zip(members, saved, strict=True):
            m.history = [EpochRecord.from_dict(h) for h in info["history"]]
            m.alive = info["alive"]
            m.loader.rng.bit_generator.state = info["rng_state"]
        if process == 0:  # the aggregate described the members as they were: written at the end
            for name in (rundir.SUMMARY, SPREAD):
                (run.folder / name).unlink(missing_ok=True)
    else:
        done, params = 0, [init_params(spec, m.config.seed, np.float32) for m in members]
    if process == 0:  # the epochs asked (more on --resume)
        rundir.write_json(run.folder / rundir.POPULATION, pc.to_dict())

    def save_group(epoch: int, params: list[Any], members: list[loop.Member]) -> None:
        info = [{"name": None if m.folder is None else m.folder.name, "alive": m.alive,
                 "rng_state": m.loader.rng.bit_generator.state,
                 "history": [h.to_dict() for h in m.history]} for m in members]  # fmt: skip
        checkpoint.save(run.folder / checkpoint_name(process), epoch, params, info)

    def val_loaders() -> list[Any]:
        return [SeqDataLoader(data.val_corpus, B, T, False, m.config.seed) for m in members]

    val = None if data.val_corpus is None else val_loaders
    context = loop.Loop(run, spec, data.vocab, val, title, save_group, single=False, saved=done)
    try:
        group = backend.group(spec, params, [m.config for m in members], data, place)
        loop.start_files(context, members)
        seconds = loop.train(context, group, members, done + 1, on_epoch, stop)
        loop.finish(context, group, members, backend.describe(), seconds, backend.device,
                    extra={"population": str(pc.path)})  # fmt: skip
    except OSError as err:
        raise RunWriteError(f"could not write the population's files in {pc.path}: "
                            f"{err.strerror or err}") from None  # fmt: skip
    return _aggregate(pc, members)


def _aggregate(pc: PopulationConfig, members: list[loop.Member]) -> PopulationResult:
    """Once every process has written its members: the first one's summary of them all."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("rnn-lm: every member written")
    if jax.process_index() != 0:
        return PopulationResult(pc)
    folder = pc.path
    results = {m.name: r for m in pc.members if (r := load_finished(folder / m.name)) is not None}
    diverged = [m.name for m in pc.members if m.name not in results]
    epochs = max((len(r.history) for r in results.values()), default=0)
    speeds = [sum(r.history[e].tokens_per_sec for r in results.values() if len(r.history) > e)
              for e in range(epochs)]  # fmt: skip
    result = finish(pc, results, diverged, float(np.median(speeds)) if speeds else 0.0, folder)
    if diverged:
        raise RunDiverged(
            f"{len(diverged)} of {len(pc.members)} members diverged ({', '.join(diverged)}): "
            f"their records are kept and the population checkpoint holds their last good "
            f"parameters; the others finished and "
            f"{folder / rundir.SUMMARY} sums them up"
        )
    return result
