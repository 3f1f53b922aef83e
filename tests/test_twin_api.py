"""numpy_ref and rnn_jax offer one API: `import numpy_ref as impl` or `import rnn_jax as impl`."""

import inspect

import pytest

import numpy_ref
import rnn_jax


def test_numpy_ref_lists_every_public_name_once_in_one_category() -> None:
    categories = [*numpy_ref.TWIN, *numpy_ref.SHARED, *numpy_ref.OWN]
    assert len(categories) == len(set(categories))
    assert sorted(numpy_ref.__all__) == sorted(categories)
    assert all(hasattr(numpy_ref, name) for name in categories)


@pytest.mark.parametrize("name", numpy_ref.TWIN)
def test_twin_functions_have_the_same_leading_parameters(name: str) -> None:
    ours, theirs = getattr(numpy_ref, name), getattr(rnn_jax, name)
    assert ours is not theirs  # computed by each package
    reference = list(inspect.signature(ours).parameters)
    twin = list(inspect.signature(theirs).parameters)
    # rnn_jax may add keyword options (grad_mode, device) after the shared ones, never before.
    assert twin[: len(reference)] == reference


@pytest.mark.parametrize("name", numpy_ref.SHARED)
def test_shared_names_are_numpy_refs_very_objects(name: str) -> None:
    assert getattr(rnn_jax, name) is getattr(numpy_ref, name)


def test_rnn_jax_exports_the_twin_and_shared_names() -> None:
    assert set(numpy_ref.TWIN) | set(numpy_ref.SHARED) <= set(rnn_jax.__all__)
    assert all(hasattr(rnn_jax, name) for name in rnn_jax.__all__)


def test_the_cell_tables_name_the_same_cells_in_the_same_order() -> None:
    from numpy_ref.cells import CELLS as NUMPY_CELLS
    from rnn_jax.cells import CELLS as JAX_CELLS

    assert list(JAX_CELLS) == list(NUMPY_CELLS)
    assert all(cell.name == name for name, cell in JAX_CELLS.items())
