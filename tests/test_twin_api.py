"""numpy_ref and rnn_jax offer one API: `import numpy_ref as impl` or `import rnn_jax as impl`."""

import inspect

import pytest

import numpy_ref
import rnn_jax

TWIN = [
    "ModelSpec",
    "init_params",
    "begin_state",
    "forward",
    "forward_loss",
    "loss_and_grads",
    "evaluate",
    "train_epoch",
    "train",
    "predict",
]


@pytest.mark.parametrize("name", TWIN)
def test_both_packages_export_the_name_with_the_same_leading_parameters(name: str) -> None:
    ours, theirs = getattr(numpy_ref, name), getattr(rnn_jax, name)
    if inspect.isclass(ours):
        assert ours is theirs  # one ModelSpec for every implementation
        return
    reference = list(inspect.signature(ours).parameters)
    twin = list(inspect.signature(theirs).parameters)
    # rnn_jax may add keyword options (grad_mode, device) after the shared ones, never before.
    assert twin[: len(reference)] == reference


def test_one_initialiser_serves_both() -> None:
    assert rnn_jax.init_params is numpy_ref.init_params
