"""``python -m experiments.gradcheck``: every row passes as written; each plant fails the rows its
missing term feeds and only those; bad input ends with one line and exit code 2.

Why a plant fails exactly these rows. A plant on ``W_h{g}``, ``c`` or ``direct`` removes a term
of the gradient that a step sends back to the step before it, so the gradient reaching every
step but the last is wrong, and with it every layer parameter (each sums over the steps) and the
initial state; the output layer's gradient is formed before the walk back in time and stays
right. A plant on ``dW_h{g}`` leaves the walk alone and loses one weight's sum (B2): that row
alone. The model is numpy_ref.gradcheck.problem's, whose weights make every term O(1) of the
gradient, so a missing one is a relative error far above the tolerance 1e-6.
"""

from __future__ import annotations

import pytest

from experiments.study import gradcheck
from numpy_ref.cells import CELLS
from numpy_ref.gradcheck import problem

PLANTS = [(name, plant) for name, cell in CELLS.items() for plant in gradcheck.plants(cell)]


def rows_of(cell_name: str, plant: str | None = None, layers: int = 1, T: int = 4):
    cell = CELLS[cell_name]
    spec, params, X, Y, state = problem(cell.kind, layers, cell.reset or "before", T=T)
    chosen = gradcheck.plants(cell)[plant] if plant else None
    return gradcheck.run_check(spec, params, X, Y, state, chosen, with_jax=False)


def failing(rows) -> set[str]:
    return {row.check.name for row in rows if not row.passed}


@pytest.mark.parametrize("cell_name", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
def test_without_a_plant_every_row_passes(cell_name: str, layers: int) -> None:
    rows = rows_of(cell_name, layers=layers)
    assert failing(rows) == set()
    assert rows[-1].check.name in ("H_0", "C_0")  # the initial state is checked too


@pytest.mark.parametrize(("cell_name", "plant"), PLANTS, ids=[f"{c}-{p}" for c, p in PLANTS])
def test_each_plant_fails_the_rows_its_term_feeds(cell_name: str, plant: str) -> None:
    rows = rows_of(cell_name, plant, layers=2)
    names = {row.check.name for row in rows}
    if plant.startswith("dW_"):
        expected = {f"layers.0.{plant[1:]}", f"layers.1.{plant[1:]}"}
    else:  # through time: everything but the output layer
        expected = names - {"W_hq", "b_q"}
    assert failing(rows) == expected
    for row in rows:
        if row.check.name in expected:
            assert row.check.max_error > 1e-3, row.check.describe()  # not a near miss


@pytest.mark.parametrize(
    ("plant", "row"), [("W_hf", "H_0"), ("c", "C_0"), ("dW_hf", "layers.0.W_hf")]
)
def test_one_step_tells_the_memory_path_from_the_hidden_path(plant: str, row: str) -> None:
    """With T = 1 nothing flows back through time except into the initial state."""
    assert failing(rows_of("lstm", plant, T=1)) == {row}


def test_the_jax_columns_agree_and_catch_the_plant_too(capsys) -> None:
    pytest.importorskip("jax")
    assert gradcheck.main(["--kind", "gru"]) == 0
    out = capsys.readouterr().out
    assert "jax.grad" in out and "jax bptt" in out and "all 12 rows pass" in out
    assert gradcheck.main(["--kind", "rnn", "--plant", "dW_hh"]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("layers.0.W_hh"))
    assert line.split()[-5:] == ["0.00e+00", "1.0e+00", "1.0e+00", "1.0e+00", "FAIL"]  # all lost
    assert "1 of 6 rows fail: layers.0.W_hh" in out


def test_a_plant_exits_1_and_prints_what_is_missing(capsys) -> None:
    assert gradcheck.main(["--kind", "lstm", "--plant", "c", "--no-jax"]) == 1
    out = capsys.readouterr().out
    assert "planted: --plant c: dc_prev dropped" in out
    assert "14 of 16 rows fail" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith(("W_hq", "b_q"))] == [
        "pass",
        "pass",
    ]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--kind", "rnn", "--plant", "W_hf"], "--plant W_hf: the rnn cell has no such plant"),
        (["--kind", "transformer"], "--kind"),
        (["--hidden", "0"], "--hidden: must be an integer >= 1"),
        (["--steps", "x"], "--steps"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment, capsys) -> None:
    assert gradcheck.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and fragment in captured.err


def test_help_lists_every_plant(capsys) -> None:
    with pytest.raises(SystemExit):
        gradcheck.main(["--help"])
    out = capsys.readouterr().out
    for _, plant in PLANTS:
        assert f"    {plant} " in out
