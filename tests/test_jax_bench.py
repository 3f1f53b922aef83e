"""The benchmark runs end to end and reports what it says (a smoke test, not a measurement)."""

from __future__ import annotations

import importlib.util
import json

from experiments import bench


def test_bench_runs_and_writes_its_table_and_json(tmp_path, capsys):
    impls = ["numpy", "jax-bptt", "jax-autodiff"]
    if importlib.util.find_spec("torch") is not None:
        impls += ["torch", "torch-scratch"]
    out = tmp_path / "bench.json"
    argv = ["--configs", "rnn", "--repeats", "2", "--warmup", "0", "--impls", *impls]
    assert bench.main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "CPUs" in printed and "jax 0." in printed
    report = json.loads(out.read_text())
    results = {r["impl"]: r for r in report["results"]}
    assert set(results) == set(impls)
    assert all(r["tokens_per_sec"] > 0 and r["best_ms"] <= r["step_ms"] for r in results.values())
    assert results["numpy"]["vs_numpy"] == 1.0
    assert results["jax-bptt"]["compile_s"] > 0 and results["numpy"]["compile_s"] is None
    assert report["environment"]["machine"]
