"""Populations: member k of a vmapped JAX population is the single run with its settings; the
same population on 4 devices, and on 2 processes, equals it on one; the commands write a run
directory per member and the aggregate and resume (comparisons over seeds: tests/test_compare.py).

Tolerances. Float64: the population runs the single run's step under ``jax.vmap``, which batches
the products (another summation order): ~1e-16 per operation, over 3 epochs of SGD at lr <= 1 on
a tiny model (measured: 2e-15); 1e-12 leaves a factor 500. Float32: the same at ~6e-8 per
operation (measured: 5e-7 after 3 epochs); 1e-4, the cross-tests' float32 bound. Devices and
processes: the member axis is split, each device computes its own members with the same
program, so the results agree to the float64 bound (measured: equal or 1e-14).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import VARIANT_IDS, VARIANTS, counting_compiles, rel_diff

import rnn_jax
from experiments.analysis import table
from experiments.sections import command
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine
from numpy_ref.population import Member, grid, max_batches, stack
from numpy_ref.spec import ModelSpec, flatten_params, init_params
from rnn_jax import epoch

ROOT = Path(__file__).resolve().parents[1]
B, T = 8, 10
MEMBERS = (Member(0, 1.0, 1.0), Member(1, 0.5, 1.0), Member(2, 1.0, 0.05))

pytestmark = pytest.mark.usefixtures("corpus_env")


def train_population(spec, members, corpus, dtype, random, grad_mode="bptt", epochs=3):
    start = [init_params(spec, m.seed, dtype, sigma=0.1) for m in members]
    group = epoch.Members.create(spec, start, [(m.lr, m.theta) for m in members])
    loaders = [SeqDataLoader(corpus, B, T, random, m.seed) for m in members]
    steps = max_batches(len(corpus), B, T, random)
    history = []
    for _ in range(epochs):
        stats = epoch.train_epoch(group, loaders, random, (B, T), steps, grad_mode=grad_mode)
        history.append([s.perplexity for s in stats])
    return np.array(history), group.to_numpy()


def assert_members_are_single_runs(
    spec, corpus, vocab, dtype, random, tol, grad_mode="bptt", members=MEMBERS
):
    history, finals = train_population(spec, members, corpus, dtype, random, grad_mode)
    for k, m in enumerate(members):
        loader = SeqDataLoader(corpus, B, T, random, m.seed)
        start = rnn_jax.to_jax(init_params(spec, m.seed, dtype, sigma=0.1), "cpu")
        params, single = rnn_jax.train(
            spec, start, loader, vocab, m.lr, m.theta, 3, random, grad_mode=grad_mode
        )
        for computed in (params, finals[k]):  # in the dtype the test names
            assert {v.dtype for v in flatten_params(computed).values()} == {np.dtype(dtype)}
        ppl = np.array([s.perplexity for s in single])
        np.testing.assert_allclose(history[:, k], ppl, rtol=tol, atol=0, err_msg=m.name)
        assert rel_diff(params, finals[k]) < tol, m.name


@pytest.mark.parametrize(("kind", "reset"), VARIANTS, ids=VARIANT_IDS)
def test_member_k_is_the_single_run_float64(x64, kind, reset) -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec(kind, len(vocab), 8, 1, reset)
    for random in (False, True):
        assert_members_are_single_runs(spec, corpus, vocab, np.float64, random, 1e-12)


def test_member_k_is_the_single_run_with_autodiff_float64(x64) -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("lstm", len(vocab), 8, 1)
    assert_members_are_single_runs(spec, corpus, vocab, np.float64, False, 1e-12, "autodiff")


def test_member_k_is_the_single_run_with_autodiff_float32() -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("lstm", len(vocab), 8, 1)
    assert_members_are_single_runs(spec, corpus, vocab, np.float32, False, 1e-4, "autodiff")


def test_member_k_is_the_single_run_float32() -> None:
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("gru", len(vocab), 8, 1, "before")
    assert_members_are_single_runs(spec, corpus, vocab, np.float32, False, 1e-4)


def test_a_population_of_one_is_the_single_run(x64) -> None:
    """One member runs its own step, not vmap over one member (rnn_jax.epoch)."""
    corpus, vocab = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("lstm", len(vocab), 8, 1)
    assert_members_are_single_runs(
        spec, corpus, vocab, np.float64, False, 1e-12, members=MEMBERS[1:2]
    )


def test_lr_and_theta_are_values_of_one_compiled_program() -> None:
    corpus, _ = load_corpus_time_machine(max_tokens=1500)
    spec = ModelSpec("rnn", 28, 4)
    with counting_compiles() as compiles:
        train_population(spec, grid([0], [0.5, 1.0], [1.0]), corpus, np.float32, False, epochs=1)
        first = len(compiles)  # the programs of 2 members: pack, epoch, unpack
        train_population(
            spec, grid([1], [2.0, 0.1], [3.0, 0.2])[:2], corpus, np.float32, False, epochs=1
        )
    assert first > 0 and len(compiles) == first  # other rates, nothing compiled again


# --- devices and processes ---------------------------------------------------------------------

SHARDED = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, "tests")
import rnn_jax
from rnn_jax import epoch, sharding
from test_population import MEMBERS, train_sharded
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine
from numpy_ref.spec import ModelSpec, init_params, flatten_params
assert jax.device_count() == 4
corpus, vocab = load_corpus_time_machine(max_tokens=1500)
spec = ModelSpec("gru", len(vocab), 8, 1, "after")
for members in (4, 3):  # 3 does not divide the 4 devices: padded with an idle member
    one, a = train_sharded(spec, members, corpus, None)
    four, b = train_sharded(spec, members, corpus, sharding.make_mesh())
    assert np.max(np.abs(one - four) / one) < 1e-12, (members, one, four)
    assert max(np.max(np.abs(x - y)) for x, y in zip(a, b)) < 1e-12
# data parallelism: one model, the 32 rows of a minibatch over 4 devices
p0 = init_params(spec, 0, np.float64, sigma=0.1)
mesh = sharding.make_mesh(members=1, batch=4)
single, parallel = rnn_jax.to_jax(p0, "cpu"), p0
one, many = SeqDataLoader(corpus, 32, 10, False, 3), SeqDataLoader(corpus, 32, 10, False, 3)
for _ in range(3):
    single, s1 = rnn_jax.train_epoch(spec, single, one, 1.0, 1.0, False)
    parallel, s2 = epoch.data_parallel_train_epoch(spec, parallel, many, 1.0, 1.0, False,
                                                      mesh)
    assert abs(s1.perplexity - s2.perplexity) < 1e-12 * s1.perplexity
fa, fb = flatten_params(single), flatten_params(parallel)
assert max(float(np.max(np.abs(np.asarray(fa[k]) - np.asarray(fb[k])))) for k in fa) < 1e-12
print("ok")
"""


def train_sharded(spec, count, corpus, mesh):
    """Helper of the subprocess above: ``count`` members of MEMBERS' pattern on ``mesh``."""
    from rnn_jax import sharding

    members = [Member(k, MEMBERS[k % 3].lr, MEMBERS[k % 3].theta) for k in range(count)]
    padded = count if mesh is None else sharding.padded_count(count, mesh)
    rows = [*members, *[members[0]] * (padded - count)]
    place = epoch.Placement(mesh, padded, range(padded))
    start = [init_params(spec, m.seed, np.float64, sigma=0.1) for m in rows]
    group = epoch.Members.create(spec, start, [(m.lr, m.theta) for m in rows], place)
    loaders = [
        SeqDataLoader(corpus, B, T, False, m.seed) if k < count else None
        for k, m in enumerate(rows)
    ]
    steps = max_batches(len(corpus), B, T, False)
    for _ in range(3):
        stats = epoch.train_epoch(group, loaders, False, steps=steps, batch_shape=(B, T))
    leaves = [np.asarray(x)[:count] for x in jax.tree.leaves(stack(group.to_numpy()))]
    return np.array([s.perplexity for s in stats[:count]]), leaves


def test_a_population_on_4_devices_and_data_parallelism_equal_one_device() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHARDED], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUN = (
    "--impl jax --seeds 0-3 --lr 1,0.5 --epochs 3 --hidden 8 --max-tokens 1500 --batch-size 8 "
    "--num-steps 10"
).split()


def test_two_processes_train_the_population_of_one(tmp_path) -> None:
    """Two processes with 2 CPU devices each (JAX's CPU collectives), each feeding its members."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    command = [sys.executable, "-m", "experiments.gru", *RUN]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *command,
                "--out",
                str(tmp_path / "two"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(p),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    single = subprocess.run(
        [*command, "--out", str(tmp_path / "one")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert single.returncode == 0, single.stderr
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    members = json.loads((tmp_path / "one" / "population.json").read_text())["members"]
    assert len(members) == 8
    for m in members:
        ours = (tmp_path / "two" / m["name"] / "metrics.jsonl").read_text().splitlines()
        theirs = (tmp_path / "one" / m["name"] / "metrics.jsonl").read_text().splitlines()
        for a, b in zip(ours, theirs, strict=True):
            a, b = json.loads(a), json.loads(b)
            for key in ("train_perplexity", "val_perplexity", "grad_norm_median"):
                if a[key] is None or b[key] is None:  # an epoch without validation
                    assert a[key] is b[key], (m["name"], key)
                    continue
                assert abs(a[key] - b[key]) <= 1e-6 * abs(b[key]), (m["name"], key)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert [s["train_perplexity"]["n"] for s in summary["settings"]] == [4, 4]


# --- the commands ------------------------------------------------------------------------------

TINY = ["--epochs", "3", "--hidden", "8", "--max-tokens", "2000"]


def test_a_jax_population_writes_every_member_and_the_aggregate(tmp_path, capsys) -> None:
    out = tmp_path / "pop"
    code = command.main(
        "lstm", [*TINY, "--impl", "jax", "--seeds", "0-2", "--lr", "1,2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    for m in grid([0, 1, 2], [1.0, 2.0], [1.0]):
        files = {p.name for p in (out / m.name).iterdir()}
        assert {"config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"} <= files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "population" and summary["diverged"] == []
    lr1, lr2 = summary["settings"]
    finals = [
        json.loads((out / f"seed{s}-lr1-theta1" / "summary.json").read_text())["train_perplexity"]
        for s in range(3)
    ]
    assert lr1["train_perplexity"]["n"] == 3 and lr2["lr"] == 2.0
    assert lr1["train_perplexity"]["mean"] == pytest.approx(np.mean(finals), rel=1e-12)
    assert lr1["train_perplexity"]["sd"] == pytest.approx(np.std(finals, ddof=1), rel=1e-9)
    assert (out / "spread.png").read_bytes()[:4] == b"\x89PNG"
    assert "lr 1, theta 1: final perplexity" in printed
    rows = [line for line in _table(capsys, out).splitlines()[2:]]
    assert len(rows) == 2 and all(" ± " in row and "(3)" in row for row in rows)


def _table(capsys, *paths: Path) -> str:
    assert table.main([str(p) for p in paths]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("impl", ["jax", "numpy"])
def test_an_interrupted_population_resumes_bit_identically(impl, tmp_path, capsys) -> None:
    from experiments.populations import population
    from experiments.populations.runner import run_population
    from experiments.run.loop import RunInterrupted

    argv = [*TINY, "--epochs", "4", "--impl", impl, "--seeds", "0,1", "--checkpoint-every", "2"]
    assert command.main("gru", [*argv, "--out", str(tmp_path / "whole")]) == 0
    config, _ = _population_config("gru", [*argv, "--out", str(tmp_path / "cut")])
    calls = iter(range(10**6))
    saved = {
        "jax": "epoch 2 of every member is saved",
        "numpy": "seed0-lr1-theta1: .* epoch 2 is saved in .*cut/seed0-lr1-theta1/checkpoint.npz",
    }[impl]
    with pytest.raises(RunInterrupted, match=f"{saved}.*--resume {tmp_path / 'cut'}$"):
        run_population(
            config, population.start(config, False), stop=lambda: next(calls) >= 2
        )  # in epoch 3
    assert command.main("gru", ["--resume", str(tmp_path / "cut")]) == 0
    for m in ("seed0-lr1-theta1", "seed1-lr1-theta1"):
        a = (tmp_path / "cut" / m / "metrics.jsonl").read_text().splitlines()
        b = (tmp_path / "whole" / m / "metrics.jsonl").read_text().splitlines()
        strip = [
            {k: v for k, v in json.loads(x).items() if k not in ("tokens_per_sec", "seconds")}
            for x in a
        ]
        assert strip == [
            {k: v for k, v in json.loads(x).items() if k not in ("tokens_per_sec", "seconds")}
            for x in b
        ]
    capsys.readouterr()


def _population_config(section, argv):
    from experiments.run import flags

    args = flags.build_parser(section).parse_args(argv)
    (config,), resume = command.configs_from_args(section, args, "cmd")
    return config, resume


def test_a_diverging_member_stops_alone_and_the_command_says_so(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    code = command.main(
        "rnn_concise", [*TINY, "--impl", "jax", "--seeds", "0", "--lr", "1,1e30", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 3 and "1 of 2 members diverged (seed0-lr1e+30-theta1)" in err
    bad = [json.loads(x) for x in (out / "seed0-lr1e+30-theta1" / "metrics.jsonl").open()]
    assert (
        bad[-1]["diverged"] is True and not (out / "seed0-lr1e+30-theta1" / "summary.json").exists()
    )
    assert (
        json.loads((out / "summary.json").read_text())["settings"][0]["train_perplexity"]["n"] == 1
    )
