"""docs/bptt.ipynb: committed without outputs, and it runs from top to bottom.

Running it needs the optional extra ``.venv/bin/pip install -e '.[notebook]'`` (nbclient, nbformat,
ipykernel); without it that test is skipped and says so. The notebook's own sizes keep the run
to seconds (a 3-unit LSTM step, a V=5 gradient check, 50 steps of gradient flow at H = 128,
8 epochs of a 64-unit RNN on 10,000 characters).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "bptt.ipynb"
EXTRA = "the notebook extra is not installed: .venv/bin/pip install -e '.[notebook]'"


def test_the_committed_notebook_has_no_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [], cell["source"][:80]
        assert cell["execution_count"] is None, cell["source"][:80]


@pytest.mark.usefixtures("corpus_env")
def test_the_notebook_runs_from_top_to_bottom() -> None:
    nbformat = pytest.importorskip("nbformat", reason=EXTRA)
    nbclient = pytest.importorskip("nbclient", reason=EXTRA)
    pytest.importorskip("ipykernel", reason=EXTRA)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if one fails
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert text.count("by hand == library: True") == 4
    errors = [float(line.split()[-1]) for line in text.splitlines() if "max relative error" in line]
    assert len(errors) == 3 and max(errors) < 1e-6
    assert text.count("FAIL") == 14  # the planted table: every row but W_hq and b_q
    assert "--plant c      fails: ['C_0']" in text
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 2  # the two figures
