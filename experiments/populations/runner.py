"""Running a population: as one JAX program (:mod:`experiments.populations.population_jax`), or
member after member (numpy, torch: :func:`experiments.populations.population.run_sequential`),
with or without a progress bar on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from experiments.populations.population import PopulationConfig, PopulationResult, run_sequential
from experiments.populations.population_jax import run_jax_population


def run_population(
    pc: PopulationConfig,
    checked: Any,
    on_epoch: Callable[..., None] | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> PopulationResult:
    """Train every member: as one JAX program, or one after another (numpy, torch)."""
    backend, data = checked
    if pc.base.impl == "jax":
        return run_jax_population(pc, backend, data, on_epoch, stop, resume)
    return run_sequential(pc, on_epoch, stop, resume, checked)


def run_population_with_progress(config: Any, prepared: Any, stop: Any, resume: bool) -> Any:
    """:func:`run_population` with one progress bar for the whole population on stderr."""
    from tqdm import tqdm

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
