"""Shared fixtures: where the book's corpus is, for the tests that need the real text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from numpy_ref.data import DATA_DIR_ENV, FILE_NAME

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _corpus_dir() -> Path | None:
    for candidate in (os.environ.get(DATA_DIR_ENV), _SHARED):
        if candidate and (Path(candidate) / FILE_NAME).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def corpus_file() -> Path:
    """The book's timemachine.txt; skipped locally when absent, a failure under CI."""
    found = _corpus_dir()
    if found is None:
        message = (
            f"the corpus {FILE_NAME} is not available: set ${DATA_DIR_ENV} to the folder "
            f"holding it (CI points it at ../shared/data)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found / FILE_NAME


@pytest.fixture
def corpus_env(corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$RNN_LM_DATA_DIR`` at the real corpus for the duration of one test."""
    monkeypatch.setenv(DATA_DIR_ENV, str(corpus_file.parent))
    return corpus_file
