"""``bench --population 1,4,16``: a population's aggregate speed against PyTorch's runs in turn.

For every configuration and member count M, on the same (B, T) = (32, 35) minibatches of V = 28:

- ``jax-population``: one call of the epoch's compiled program (:mod:`rnn_jax.epoch`):
  S = 8 training steps of M members at once (forward, backward, clipping, SGD, lr and theta per
  member); aggregate tokens/s = M * S * B * T / seconds;
- ``jax-single``: the single run's jitted step (``rnn_jax.make_train_step`` on the packed
  parameters, as ``rnn_jax.train_epoch`` trains), S steps per call measured: what one member
  would get alone;
- ``torch``: PyTorch's ``nn.*`` model stepped M * S times one after another (what M runs of the
  book's PyTorch code cost); its tokens/s do not depend on M.

Per member = aggregate / M, against the single run ("keeps the single run's per-member speed"
when the ratio is at least 1); ``vs torch`` = the population's aggregate over PyTorch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.benchmarks.bench_steps import BATCH, STEPS, VOCAB, torch_concise_step
from experiments.benchmarks.measure import CONFIGS, measure, text_table

STEPS_PER_CALL = 8  # S: training steps in one measured call (a run's calls: rnn_jax.epoch.CHUNK)


@dataclass
class PopulationResult:
    config: str
    members: int
    population_tokens_per_sec: float  # aggregate
    single_tokens_per_sec: float  # one member alone (the single run's step)
    torch_tokens_per_sec: float | None  # M runs in turn

    @property
    def per_member(self) -> float:
        return self.population_tokens_per_sec / self.members

    @property
    def vs_single(self) -> float:
        return self.per_member / self.single_tokens_per_sec

    @property
    def vs_torch(self) -> float | None:
        if self.torch_tokens_per_sec is None:
            return None
        return self.population_tokens_per_sec / self.torch_tokens_per_sec


def population_step(spec: Any, members: int, device: str = "cpu") -> Any:
    """One call of the epoch program (:mod:`rnn_jax.epoch`): STEPS_PER_CALL steps of ``members``
    members, until ready."""
    from numpy_ref.population import stack
    from numpy_ref.spec import begin_state, init_params
    from rnn_jax import epoch, get_device

    rng = np.random.default_rng(0)
    place = epoch.Placement(None, members, range(members), get_device(device))
    group = epoch.Members.create(
        spec, [init_params(spec, k) for k in range(members)], [(1.0, 1.0)] * members, place
    )
    shape = (STEPS_PER_CALL, members, BATCH, STEPS)
    Xs, Ys = (place.put(rng.integers(0, VOCAB, shape, dtype=np.int32), axis=1) for _ in range(2))
    counts = place.put(np.full(members, STEPS_PER_CALL, np.int32))
    state = place.put(stack([begin_state(spec, BATCH)] * members))
    run = epoch.train_program(spec, "bptt")
    carry = [group.params, group.opt_state, state]

    def step() -> None:
        *carry[:], losses, _ = run(*carry, Xs, Ys, counts, True, False, group.lr, group.theta)
        losses.block_until_ready()

    return step


def single_steps(spec: Any, device: str = "cpu") -> Any:
    """STEPS_PER_CALL steps of the single run's jitted step, until ready."""
    import jax

    import rnn_jax
    from numpy_ref.spec import init_params
    from rnn_jax.training import pack

    rng = np.random.default_rng(0)
    init_opt_state, train_step = rnn_jax.make_train_step(spec, 1.0, 1.0)
    target = rnn_jax.get_device(device)
    params = pack(spec, init_params(spec, 0), target)  # as rnn_jax.train_epoch trains
    carry = [params, init_opt_state(params)]
    X, Y = (
        jax.device_put(rng.integers(0, VOCAB, (BATCH, STEPS), dtype=np.int32), target)
        for _ in range(2)
    )
    state = rnn_jax.begin_state(spec, BATCH, device=target)

    def step() -> None:
        for _ in range(STEPS_PER_CALL):
            params, opt_state, loss, _, _ = train_step(*carry, X, Y, state)
            carry[:] = [params, opt_state]
        loss.block_until_ready()

    return step


def torch_steps(spec: Any, count: int, device: str = "cpu") -> Any:
    """``count`` steps of PyTorch's nn.* model, one after another."""
    rng = np.random.default_rng(0)
    X, Y = (rng.integers(0, VOCAB, (BATCH, STEPS)) for _ in range(2))
    one = torch_concise_step(spec, X, Y, device)

    def step() -> None:
        for _ in range(count):
            one()

    return step


def bench_populations(
    names: Sequence[str],
    counts: Sequence[int],
    repeats: int,
    with_torch: bool,
    device: str = "cpu",
) -> list[PopulationResult]:
    """Median times (module docstring) of every config and member count, interleaved."""
    results = []
    tokens = STEPS_PER_CALL * BATCH * STEPS
    for name in names:
        spec = CONFIGS[name].spec()
        steps = {"single": single_steps(spec, device)}
        for m in counts:
            steps[f"pop{m}"] = population_step(spec, m, device)
        if with_torch:
            steps["torch"] = torch_steps(spec, STEPS_PER_CALL, device)
        times, _ = measure(steps, warmup=1, repeats=repeats, block=max(1, repeats // 2), settle=1)
        median = {k: float(np.median(v)) for k, v in times.items()}
        for m in counts:
            torch = tokens / median["torch"] if with_torch else None
            results.append(
                PopulationResult(
                    name, m, m * tokens / median[f"pop{m}"], tokens / median["single"], torch
                )
            )
    return results


def format_table(results: Sequence[PopulationResult]) -> str:
    header = (
        "config",
        "members",
        "population tok/s",
        "per member",
        "vs single run",
        "torch in turn tok/s",
        "vs torch",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.config,
                str(r.members),
                f"{r.population_tokens_per_sec:,.0f}",
                f"{r.per_member:,.0f}",
                f"{r.vs_single:.2f}x",
                "" if r.torch_tokens_per_sec is None else f"{r.torch_tokens_per_sec:,.0f}",
                "" if r.vs_torch is None else f"{r.vs_torch:.2f}x",
            )
        )
    return text_table(rows, left=1)


def main(args: Any, env: dict[str, Any]) -> int:
    """``bench --population``: every size against PyTorch's runs in turn, printed."""
    from dataclasses import asdict

    from experiments.benchmarks.bench_steps import BATCH, STEPS, VOCAB
    from experiments.run.rundir import write_json

    per_call = STEPS_PER_CALL
    print(
        f"B={BATCH} T={STEPS} V={VOCAB}, float32; {per_call} training steps "
        f"per call, median of {args.repeats} calls, interleaved\n"
    )
    results = bench_populations(
        args.configs, args.population, args.repeats, env["torch"] is not None, args.device
    )
    print(format_table(results))
    if args.json:
        write_json(args.json, {"environment": env, "population": [asdict(r) for r in results]})
    return 0
