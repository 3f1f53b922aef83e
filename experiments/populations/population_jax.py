"""A population trained by JAX as one program: the durable loop around ``rnn_jax.population``.

Every member gets the files of a single run in its own directory (config, metrics every epoch,
checkpoint, plot, summary). The population's checkpoint is one file per process
(``population.<process>.npz``, written atomically after epoch 1, every ``checkpoint_every``
epochs and after the last): the parameters of the process's members, each member's history and
loader state, and which members still train, so that ``--resume`` restarts every member from the
same epoch; the members' own ``checkpoint.npz`` follow it. A member whose training perplexity
stops being finite or exceeds the limit is frozen (it diverged) while the others go on.

Across processes (``jax.distributed``), each process loads and writes its own members; all share
the run directory (a shared file system), and the first process writes the aggregate once every
process has written its members.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.populations.population import SPREAD, PopulationConfig, PopulationResult, finish
from experiments.run import rundir
from experiments.run.records import PREFIXES, EpochRecord, RunResult, summarize
from experiments.run.runner import (
    RunDiverged,
    RunInterrupted,
    RunWriteError,
    interrupted_early,
    load_finished,
    model_spec,
    title,
)
from numpy_ref.atomic import atomic_write
from numpy_ref.checkpoint import save_checkpoint
from numpy_ref.data import SeqDataLoader
from numpy_ref.population import max_batches, stack, unstack
from numpy_ref.spec import flatten_params, init_params, unflatten_params

CHUNK = 8  # minibatches per compiled call


def checkpoint_name(process: int) -> str:
    return f"population.{process}.npz"


def _save_population(path: Path, epoch: int, params: list[Any], members: list[dict]) -> None:
    """One process's part of the population checkpoint (module docstring), atomically."""
    arrays = {f"members.{k}.{key}": value for k, p in enumerate(params)
              for key, value in flatten_params(p).items()}  # fmt: skip
    arrays["__metadata__"] = np.array(json.dumps({"epoch": epoch, "members": members}))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_population(path: Path) -> tuple[int, list[Any], list[dict]]:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__metadata__"][()]))
        arrays = {k: archive[k] for k in archive.files if k != "__metadata__"}
    params = []
    for k in range(len(meta["members"])):
        prefix = f"members.{k}."
        params.append(unflatten_params({key[len(prefix) :]: v for key, v in arrays.items()
                                        if key.startswith(prefix)}))  # fmt: skip
    return meta["epoch"], params, meta["members"]


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

    import rnn_jax
    from rnn_jax import population as pop
    from rnn_jax import sharding
    from rnn_jax.training import init_opt_state

    base = pc.base
    spec = model_spec(base, len(data.vocab))
    devices = jax.devices(backend.jax_device.platform)  # of every process
    mesh = sharding.make_mesh(devices=devices) if len(devices) > 1 else None
    count = len(pc.members) if mesh is None else sharding.padded_count(len(pc.members), mesh)
    local = range(count) if mesh is None else sharding.local_member_range(count, mesh)
    place = pop.Placement(mesh, count, local, backend.jax_device)
    members = [pc.members[k] if k < len(pc.members) else None for k in local]  # None: padding
    real = [m for m in members if m is not None]
    process = jax.process_index()
    folder = pc.path
    names = (checkpoint_name(process), rundir.POPULATION, rundir.SUMMARY, SPREAD,
             *(m.name for m in real))  # fmt: skip
    if resume:
        run = rundir.RunDir(folder, staged=False, names=names)
    elif jax.process_count() > 1:  # no staging across processes: the folder must be new
        if process == 0:
            rundir.RunDir.create(folder, overwrite=False, names=names)
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("rnn-lm: run directory created")
        run = rundir.RunDir(folder, staged=False, names=names)
    else:
        run = rundir.RunDir.create(folder, pc.base.overwrite, names=names)

    def member_dir(k: int) -> Path:
        return run.folder / members[k].name

    def ckpt_path() -> Path:
        return run.folder / checkpoint_name(process)

    B, T = base.batch_size, base.num_steps
    train_corpus, random = data.train.corpus, base.loader_random
    loaders = [None if m is None else SeqDataLoader(train_corpus, B, T, random, m.seed)
               for m in members]  # fmt: skip
    limit = base.divergence_limit(spec.vocab_size)

    def rounded(bound: int) -> int:
        return -(-bound // min(CHUNK, bound)) * min(CHUNK, bound)

    steps = rounded(max_batches(len(train_corpus), B, T, random))
    chunk = min(CHUNK, steps)
    val = data.val_corpus
    val_steps = None if val is None else rounded(max_batches(len(val), B, T, False))
    histories: list[list[EpochRecord]] = [[] for _ in members]
    alive = [m is not None for m in members]
    if resume:
        done, saved_params, saved = _load_population(ckpt_path())
        for k, info in enumerate(saved):
            histories[k] = [EpochRecord.from_dict(h) for h in info["history"]]
            alive[k] = info["alive"]
            if loaders[k] is not None:
                loaders[k].rng.bit_generator.state = info["rng_state"]
        host_params = saved_params
    else:
        done = 0
        host_params = [init_params(spec, (m or real[0]).seed, np.float32) for m in members]
        if process == 0:
            rundir.write_json(run.folder / rundir.POPULATION, pc.to_dict())
    configs = [None if m is None else pc.member_config(m) for m in members]
    for k, (config, history) in enumerate(zip(configs, histories, strict=True)):
        if config is not None:
            member_dir(k).mkdir(parents=True, exist_ok=True)
            rundir.write_json(member_dir(k) / rundir.CONFIG, {"format": rundir.RUN_FORMAT,
                              **config.to_dict(), "spec": spec.to_dict()})  # fmt: skip
            rundir.write_jsonl(member_dir(k) / rundir.METRICS, (r.to_dict() for r in history))
    params = place.put(stack(host_params))
    opt_state = jax.vmap(init_opt_state)(params)
    rates = np.array([[(m or real[0]).lr, (m or real[0]).theta] for m in members], np.float32)
    lr, theta = place.put(rates[:, 0]), place.put(rates[:, 1])
    rng_states = [None if ld is None else ld.rng.bit_generator.state for ld in loaders]
    saved_epoch, snapshot = done, (done, host_params, rng_states)

    def save(epoch: int, params_now: list[Any], rngs: list[Any]) -> None:
        info = [{"name": None if m is None else m.name, "alive": a, "rng_state": r,
                 "history": [h.to_dict() for h in hist]}
                for m, a, r, hist in zip(members, alive, rngs, histories, strict=True)]  # fmt: skip
        _save_population(ckpt_path(), epoch, params_now, info)
        for k, config in enumerate(configs):
            if config is not None and alive[k]:
                save_checkpoint(member_dir(k) / rundir.CHECKPOINT, spec, params_now[k],
                                data.vocab, config=config.to_dict(), epoch=epoch,
                                history=[h.to_dict() for h in histories[k]],
                                rng_state=rngs[k])  # fmt: skip
        run.promote()

    started = time.perf_counter()
    speeds = []
    try:
        for epoch in range(done + 1, base.num_epochs + 1):
            try:
                params, opt_state, stats = pop.train_epoch(
                    spec, params, opt_state, loaders, lr, theta, base.use_random_iter, steps,
                    alive, place, (B, T), chunk, stop=stop,
                )  # fmt: skip
            except pop.Stopped:
                raise _stopped(pc, run, save, snapshot, saved_epoch, epoch) from None
            vals = [None] * len(members)
            if val is not None:
                val_loaders = [None if m is None else SeqDataLoader(val, B, T, False, m.seed)
                               for m in members]  # fmt: skip
                vals = pop.evaluate(spec, params, val_loaders, val_steps, place, (B, T), chunk)
            speeds.append(sum(s.num_tokens for s in stats) / stats[0].seconds)
            records = []
            for k, m in enumerate(members):
                if m is None or not alive[k]:
                    continue
                record = EpochRecord.of_epoch(epoch, stats[k], vals[k], m.theta)
                ppl = record.train_perplexity
                record.diverged = not math.isfinite(ppl) or ppl > limit
                alive[k] = not record.diverged
                histories[k].append(record)
                records.append(record)
                rundir.write_jsonl(member_dir(k) / rundir.METRICS,
                                   (r.to_dict() for r in histories[k]))  # fmt: skip
            rngs = [None if ld is None else ld.rng.bit_generator.state for ld in loaders]
            host = unstack(sharding.local_rows(params))
            snapshot = (epoch, host, rngs)
            if epoch == 1 or epoch % base.checkpoint_every == 0 or epoch == base.num_epochs:
                save(epoch, host, rngs)
                saved_epoch = epoch
            if epoch % base.predict_every == 0 or epoch == base.num_epochs:
                for k, cfg in enumerate(configs):
                    if cfg is not None and histories[k]:
                        from experiments.run.plots import plot_perplexity

                        plot_perplexity([r.to_dict() for r in histories[k]],
                                        member_dir(k) / rundir.PLOT, title(cfg),
                                        cfg.theta)  # fmt: skip
            if on_epoch is not None:
                on_epoch(epoch, records)
            if not any(alive):
                break
        seconds_total = time.perf_counter() - started
        host = snapshot[1]
        local_device = jax.local_devices(backend=backend.jax_device.platform)[0]
        described = backend.describe()
        for k, (m, cfg) in enumerate(zip(members, configs, strict=True)):
            if m is None or not alive[k]:
                continue
            result = RunResult(cfg, member_dir(k), backend.device, histories[k])
            model = rnn_jax.to_jax(host[k], local_device)
            result.predictions = {p: rnn_jax.predict(p, cfg.num_preds, spec, model, data.vocab)
                                  for p in PREFIXES}  # fmt: skip
            result.summary = summarize(result, described, seconds_total)
            result.summary["population"] = str(folder)
            rundir.write_json(member_dir(k) / rundir.SUMMARY, result.summary)
    except OSError as err:
        raise RunWriteError(f"could not write the population's files in {folder}: "
                            f"{err.strerror or err}") from None  # fmt: skip
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("rnn-lm: every member written")
    if process != 0:
        return PopulationResult(pc)
    results = {m.name: r for m in pc.members if (r := load_finished(folder / m.name)) is not None}
    diverged = [m.name for m in pc.members if m.name not in results]
    result = finish(pc, results, diverged, float(np.median(speeds)) if speeds else 0.0, folder)
    if diverged:
        raise RunDiverged(
            f"{len(diverged)} of {len(pc.members)} members diverged ({', '.join(diverged)}): "
            f"their last good checkpoints are kept; the others finished and "
            f"{folder / rundir.SUMMARY} sums them up"
        )
    return result


def _stopped(pc: PopulationConfig, run: rundir.RunDir, save: Any, snapshot: Any,
             saved_epoch: int, epoch: int) -> RunInterrupted:  # fmt: skip
    done, params, rngs = snapshot
    if done == 0:
        return interrupted_early(run, epoch)
    if done > saved_epoch:
        save(done, params, rngs)
    return RunInterrupted(
        f"interrupted during epoch {epoch} of {pc.base.num_epochs}: epoch {done} of every "
        f"member is saved in {pc.path}; resume with: python -m experiments.{pc.base.section} "
        f"--resume {pc.path}"
    )
