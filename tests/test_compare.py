"""experiments.compare: one start with every implementation, populations over the same seeds,
and finished populations compared again without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.analysis import compare
from experiments.run.rundir import CHECKPOINT
from numpy_ref.spec import flatten_params

pytestmark = pytest.mark.usefixtures("corpus_env")

TINY = ["--hidden", "8", "--max-tokens", "2000"]


def test_compare_runs_the_same_start_with_each_impl(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    impls = "numpy,jax,torch" if _has_torch() else "numpy,jax"
    code = compare.main(["--impls", impls, "--epochs", "2", *TINY, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for name in (compare.TABLE, compare.JSON, compare.PLOT):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / compare.TABLE).read_text().strip() in captured.out
    rows = captured.out.splitlines()
    assert rows[0] == "| epoch | " + " | ".join(impls.split(",")) + " |"
    assert rows[2].startswith("| 1 | ") and rows[3].startswith("| 2 | ")
    if "torch" in impls:
        assert any(r.startswith("| **speed / torch (median)** |") for r in rows)
    data = json.loads((tmp_path / compare.JSON).read_text())
    assert list(data) == impls.split(",")
    # Same initial weights and the same two minibatches, then two float32 SGD steps: the final
    # parameters agree to float32 rounding (relative ~1e-6 observed). A different start or a
    # different batch would differ by the size of the weights themselves (sigma = 0.01).
    from numpy_ref.checkpoint import load_checkpoint

    finals = [load_checkpoint(Path(d["run_dir"]) / CHECKPOINT).params for d in data.values()]
    for other in finals[1:]:
        for key, value in flatten_params(finals[0]).items():
            np.testing.assert_allclose(flatten_params(other)[key], value, rtol=1e-4, atol=1e-6)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_compare_over_seeds_reports_distributions_and_a_verdict(tmp_path, capsys) -> None:
    argv = ["--impls", "numpy,jax", "--seeds", "2", "--epochs", "3", *TINY, "--section", "gru"]
    code = compare.main([*argv, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| numpy − jax: " in printed and "within seed noise" in printed
    data = json.loads((tmp_path / "compare.json").read_text())
    numpy_, jax_ = (data["implementations"][i]["late"] for i in ("numpy", "jax"))
    assert numpy_["n"] == jax_["n"] == 2
    # the same seeds, the same start and minibatches: float32 rounding apart after 3 epochs
    assert numpy_["mean"] == pytest.approx(jax_["mean"], rel=1e-4)
    assert (tmp_path / "compare.png").is_file()
    # the finished populations compare again without training: the same figures
    again = tmp_path / "again"
    pops = [str(tmp_path / "numpy"), str(tmp_path / "jax")]
    assert compare.main(["--populations", *pops, "--out", str(again)]) == 0
    # it trains nothing, so a second call rewrites its files without --overwrite
    assert compare.main(["--populations", *pops, "--out", str(again)]) == 0
    assert json.loads((again / "compare.json").read_text()) == {
        **data,
        "implementations": {
            i: {**v, "population": str(tmp_path / i)} for i, v in data["implementations"].items()
        },
    }
    capsys.readouterr()
    assert compare.main(["--populations", *pops, "--epochs", "5", "--out", str(again)]) == 2
    assert compare.main(["--populations", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].endswith("--populations compares finished runs: drop --epochs")
    assert "not a population directory" in errors[1] and len(errors) == 2


def test_a_sweep_is_not_compared_as_one_distribution(tmp_path, capsys) -> None:
    from experiments.sections import command

    sweep = tmp_path / "sweep"
    argv = ["--epochs", "1", *TINY, "--seeds", "0", "--lr", "0.5,1", "--out", str(sweep)]
    assert command.main("gru", argv) == 0
    capsys.readouterr()
    assert compare.main(["--populations", str(sweep), "--out", str(tmp_path / "c")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "a sweep over 2 settings of lr and theta; compare populations of one setting each"
        )
    )
