"""A JAX population's checkpoint: one file per process, ``population.<process>.npz``, the
parameters of the process's members under ``members.<k>.<key>`` and, as JSON metadata, the epoch
and each member's record (name, still training, loader state, history). Written atomically; what
a population's ``--resume`` reads (each member's own ``checkpoint.npz`` is written after the last
epoch)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.run.config import ConfigError
from numpy_ref.atomic import atomic_write
from numpy_ref.spec import flatten_params, unflatten_params


def checkpoint_name(process: int) -> str:
    return f"population.{process}.npz"


def save(path: Path, epoch: int, params: list[Any], members: list[dict]) -> None:
    """One process's part of the population checkpoint (module docstring), atomically."""
    arrays = {f"members.{k}.{key}": value for k, p in enumerate(params)
              for key, value in flatten_params(p).items()}  # fmt: skip
    arrays["__metadata__"] = np.array(json.dumps({"epoch": epoch, "members": members}))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read(path: Path) -> tuple[int, list[Any], list[dict]]:
    """One process's part of the population checkpoint: the epoch, the members' parameters and
    their records (name, alive, rng_state, history).

    Raises:
        ConfigError: the file does not read (truncated, damaged, unreadable), in one line.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__metadata__"][()]))
            arrays = {k: archive[k] for k in archive.files if k != "__metadata__"}
        epoch, members = int(meta["epoch"]), list(meta["members"])
        for m in members:
            if not {"name", "alive", "history", "rng_state"} <= m.keys():
                raise KeyError("a member's record")
    except PermissionError:
        raise ConfigError(
            f"--resume: {path} cannot be read (permission denied): give yourself read access "
            f"(chmod u+r)"
        ) from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"--resume: {path} is not a readable population checkpoint (truncated or damaged: "
            f"{type(err).__name__}); start the population anew with --overwrite"
        ) from None
    params = []
    for k in range(len(meta["members"])):
        prefix = f"members.{k}."
        params.append(unflatten_params({key[len(prefix) :]: v for key, v in arrays.items()
                                        if key.startswith(prefix)}))  # fmt: skip
    return epoch, params, members
