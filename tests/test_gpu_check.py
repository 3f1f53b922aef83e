"""scripts/gpu-check.sh --dry-run: every step of the GPU check, tiny, on the CPU.

The real check needs a GPU (scripts/gpu-check.sh); the dry run proves that its commands exist,
take the flags it gives them and hand each other what they expect, and that its table lands in
the page it names (a copy here, never the repository's docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def test_the_dry_run_runs_every_step_and_writes_its_table(tmp_path: Path, corpus_env: Path) -> None:
    pytest.importorskip("torch")
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nsome text\n", encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out"), "--doc", str(doc)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for n in range(1, 7):
        assert f"== gpu-check step {n}" in done.stdout
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n\nsome text\n")  # what was there is kept
    assert text.count("<!-- gpu-check: begin -->") == 1 and "<!-- gpu-check: end -->" in text
    assert "| rnn | jax-bptt |" in text and "Scratch run (2 epochs, jax on cpu:0)" in text
    assert "scripts/gpu-check.sh --dry-run" in text


def test_a_second_run_replaces_its_table(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check_report
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    doc = tmp_path / "performance.md"
    doc.write_text("intro\n", encoding="utf-8")
    gpu_check_report.write_into(doc, "first table")
    gpu_check_report.write_into(doc, "second table")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and "second table" in text and "first table" not in text


def test_an_unknown_option_is_refused() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option --bogus" in done.stderr
