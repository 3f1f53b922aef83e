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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from experiments import population, rundir
from experiments.config import SECTIONS, RunConfig
from experiments.plots import plot_spread
from experiments.records import late_median
from experiments.stats import Spread, Welch, welch
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
        names = {"final": "final train ppl", "late": "train ppl, median of the last 10%",
                 "val": "final val ppl"}  # fmt: skip
        for key, name in names.items():
            cells = [Spread.of(self.samples(i)[key]).text(3) for i in impls]
            lines.append(f"| {name} | {' | '.join(cells)} |")
        speeds = [f"{self.results[i].tokens_per_sec:.1f}" for i in impls]
        lines.append(f"| tokens/s (all runs) | {' | '.join(speeds)} |")
        lines += ["", "| late median: difference of means | t | df | p | verdict |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        for a, b, w in self.tests():
            lines.append(f"| {a} − {b}: {w.difference:+.4f} | {w.t:.2f} | {w.df:.1f} | "
                         f"{w.p:.3f} | {w.verdict} |")  # fmt: skip
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "implementations": {
                impl: {key: Spread.of(v).to_dict() for key, v in self.samples(impl).items()}
                | {"population": str(self.out / impl), "tokens_per_sec": r.tokens_per_sec}
                for impl, r in self.results.items()
            },
            "tests": [{"a": a, "b": b, "difference": w.difference, "t": w.t, "df": w.df,
                       "p": w.p, "verdict": w.verdict} for a, b, w in self.tests()],
        }  # fmt: skip


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
    rundir.write_text_atomic(out / TABLE, comparison.table() + "\n")
    rundir.write_json(out / JSON, comparison.to_dict())
    histories = {
        impl: [[h.to_dict() for h in r.history] for r in result.results.values()]
        for impl, result in comparison.results.items()
    }
    first = pcs[0].base
    plot_spread(histories, out / PLOT, f"d2l {SECTIONS[first.section].book} {first.section}, "
                f"{first.iter}: {len(pcs[0].members)} seeds per implementation")  # fmt: skip
    return comparison
