"""``compare --seeds N``: the implementations over the same seeds, compared as distributions.

One run is not a number: at the book's lr 1 the last epochs of a run spike now and then, and the
seed moves the final perplexity by about 0.1. So each implementation trains a population over the
same seeds (JAX as one program, numpy and PyTorch one run after another; run k of every
implementation starts from ``init_params(spec, seed_k)`` and reads the same minibatches); the
comparison reports per implementation the mean ± sd of the final perplexity and of the median over
the last 10% of epochs, and for each pair of implementations the difference of the latter's means
with Welch's t-test and a plain verdict: "within seed noise" (p >= 0.05) or "differs".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from experiments.populations import population
from experiments.populations.stats import Spread, Welch, welch
from experiments.run import rundir
from experiments.run.config import SECTIONS, ConfigError, RunConfig
from experiments.run.plots import plot_spread
from experiments.run.records import late_median
from numpy_ref.population import grid

TABLE, JSON, PLOT = "compare.md", "compare.json", "compare.png"


@dataclass
class SeedComparison:
    """Each implementation's population of runs over the same seeds."""

    out: Path
    results: dict[str, population.PopulationResult] = field(default_factory=dict)

    def samples(self, impl: str) -> dict[str, list[float]]:
        runs = self.results[impl].results.values()
        return {
            "final": [r.final.train_perplexity for r in runs],
            "late": [late_median([h.train_perplexity for h in r.history]) for r in runs],
            "val": [r.final.val_perplexity for r in runs if r.final.val_perplexity is not None],
        }

    def tests(self) -> list[tuple[str, str, Welch]]:
        """Welch's t of the late medians for every pair of implementations."""
        pairs = []
        for a, b in combinations(self.results, 2):
            sa, sb = self.samples(a)["late"], self.samples(b)["late"]
            if len(sa) >= 2 and len(sb) >= 2:
                pairs.append((a, b, welch(sa, sb)))
        return pairs

    def table(self) -> str:
        impls = list(self.results)
        lines = [f"| | {' | '.join(impls)} |", "|---|" + "---:|" * len(impls)]
        names = {
            "final": "final train ppl",
            "late": "train ppl, median of the last 10%",
            "val": "final val ppl",
        }
        for key, name in names.items():
            cells = [Spread.of(self.samples(i)[key]).text(3) for i in impls]
            lines.append(f"| {name} | {' | '.join(cells)} |")
        speeds = [f"{self.results[i].tokens_per_sec:.1f}" for i in impls]
        lines.append(f"| tokens/s (all runs) | {' | '.join(speeds)} |")
        lines += [
            "",
            "| late median: difference of means | t | df | p | verdict |",
            "|---|---:|---:|---:|---|",
        ]
        for a, b, w in self.tests():
            lines.append(
                f"| {a} − {b}: {w.difference:+.4f} | {w.t:.2f} | {w.df:.1f} | "
                f"{w.p:.3f} | {w.verdict} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "implementations": {
                impl: {key: Spread.of(v).to_dict() for key, v in self.samples(impl).items()}
                | {"population": str(r.config.path), "tokens_per_sec": r.tokens_per_sec}
                for impl, r in self.results.items()
            },
            "tests": [
                {
                    "a": a,
                    "b": b,
                    "difference": w.difference,
                    "t": w.t,
                    "df": w.df,
                    "p": w.p,
                    "verdict": w.verdict,
                }
                for a, b, w in self.tests()
            ],
        }


def populations(out: Path, configs: Sequence[RunConfig], seeds: Sequence[int]) -> list[Any]:
    """One population per implementation, in ``out/<impl>``, over ``seeds``."""
    return [population.PopulationConfig(c, tuple(grid(seeds, [c.lr], [c.theta]))) for c in configs]


def compare_seeds(
    out: Path, pcs: Sequence[population.PopulationConfig], run: Callable[..., Any]
) -> SeedComparison:
    """Run every population (all checked first), then write the table, JSON and plot."""
    checked = [population.start(pc, resume=False) for pc in pcs]
    comparison = SeedComparison(out)
    for pc, prepared in zip(pcs, checked, strict=True):
        comparison.results[pc.base.impl] = run(pc, prepared)
    return write(comparison)


# The settings finished populations must share to be compared: all but the implementation, the
# seeds and where and how the runs were made.
SHARED = (
    "section",
    "kind",
    "num_hiddens",
    "num_layers",
    "gru_reset",
    "lr",
    "theta",
    "num_epochs",
    "batch_size",
    "num_steps",
    "max_tokens",
    "val_fraction",
    "iter",
)


def load_populations(paths: Sequence[str | Path]) -> dict[str, population.PopulationResult]:
    """Finished populations, one per implementation with the same settings, read back from their
    directories (nothing trains): ``compare --populations``."""
    from experiments.run.runner import load_finished

    loaded: dict[str, population.PopulationResult] = {}
    first = None
    for path in map(Path, paths):
        try:
            pc = population.PopulationConfig.from_dict(
                json.loads((path / rundir.POPULATION).read_text(encoding="utf-8"))
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"--populations {path}: not a population directory ({err})") from None
        settings = {(m.lr, m.theta) for m in pc.members}
        if len(settings) != 1:
            raise ConfigError(
                f"--populations {path}: a sweep over {len(settings)} settings of lr "
                f"and theta; compare populations of one setting each"
            )
        ((lr, theta),) = settings  # the members' setting, and where the population is now
        pc = replace(pc, base=replace(pc.base, out=str(path), lr=lr, theta=theta))
        base = pc.base
        if base.impl in loaded:
            raise ConfigError(f"--populations: two {base.impl} populations; give one per impl")
        first = first or base
        for name in SHARED:
            if getattr(base, name) != getattr(first, name):
                mine, theirs = getattr(base, name), getattr(first, name)
                raise ConfigError(
                    f"--populations {path}: {name} {mine!r} differs from the "
                    f"first population's {theirs!r}"
                )
        try:
            summary = json.loads((path / rundir.SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"--populations {path}: no finished population there ({err}); "
                f"resume it with python -m experiments.{base.section} --resume "
                f"{path}"
            ) from None
        diverged = list(summary.get("diverged", []))
        results = {m.name: load_finished(path / m.name) for m in pc.members}
        missing = [n for n, r in results.items() if r is None and n not in diverged]
        if missing:
            raise ConfigError(
                f"--populations {path}: {', '.join(missing)} not finished; "
                f"resume with python -m experiments.{base.section} --resume "
                f"{path}"
            )
        loaded[base.impl] = population.PopulationResult(
            pc,
            {n: r for n, r in results.items() if r is not None},
            diverged,
            summary,
            summary.get("tokens_per_sec", 0.0),
        )
    return loaded


def write(comparison: SeedComparison) -> SeedComparison:
    """``compare.md``, ``compare.json`` and ``compare.png`` into the comparison directory."""
    out = comparison.out
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_text_atomic(out / TABLE, comparison.table() + "\n")
    rundir.write_json(out / JSON, comparison.to_dict())
    histories = {
        impl: [[h.to_dict() for h in r.history] for r in result.results.values()]
        for impl, result in comparison.results.items()
    }
    first = next(iter(comparison.results.values())).config.base
    counts = sorted({len(r.config.members) for r in comparison.results.values()})
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    plot_spread(
        histories,
        out / PLOT,
        f"d2l {SECTIONS[first.section].book} {first.section}, "
        f"{first.iter}: {seeds} seeds per implementation",
    )
    return comparison
