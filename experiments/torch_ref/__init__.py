"""The PyTorch comparison: the book's models in PyTorch, started from our weights, trained as ours.

Letters: B batch, T steps, V vocabulary, D layer input (V for layer 0, H above), H hidden,
L layers, G gates per layer.

- :mod:`.cells`: each cell of ``numpy_ref.cells.CELLS`` as the book's scratch equations in
  PyTorch, and the ``nn`` module (with its gate order) that implements it, if any;
- :mod:`.models`: :class:`ScratchLM` (the book's from-scratch models, holding our parameter dict)
  and :class:`ConciseLM` (``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` + ``Linear``, the book's concise
  sections), and the weight mapping between our dict and PyTorch's stacked layout;
- :mod:`.training`: the book's epoch, evaluation and prediction over numpy_ref's loops, with the
  book's clipping rule written out.

PyTorch is an optional extra. This package is the one place that imports it: importing the package
without PyTorch raises :class:`TorchUnavailableError` (an ``ImportError``) that says how to
install it, and nothing else in ``experiments`` imports torch.
"""

INSTALL_HINT = ".venv/bin/pip install -e '.[torch]' (the pinned CPU build)"


class TorchUnavailableError(ImportError):
    """PyTorch is not installed (it is an optional extra)."""


try:
    import torch  # noqa: F401  (the one guarded import of torch)
except ImportError as err:
    raise TorchUnavailableError(
        f"PyTorch is not installed (the torch comparison is an optional extra): {INSTALL_HINT}"
    ) from err

from experiments.torch_ref.cells import TORCH_CELLS  # noqa: E402
from experiments.torch_ref.models import (  # noqa: E402
    ConciseLM,
    ScratchLM,
    from_torch_state,
    make_model,
    to_torch_state,
)
from experiments.torch_ref.training import (  # noqa: E402
    clip_gradients,
    device_name,
    evaluate,
    loss_and_grads,
    predict,
    resolve_device,
    train_epoch,
    train_step,
)

__all__ = [
    "INSTALL_HINT",
    "TORCH_CELLS",
    "ConciseLM",
    "ScratchLM",
    "TorchUnavailableError",
    "clip_gradients",
    "device_name",
    "evaluate",
    "from_torch_state",
    "loss_and_grads",
    "make_model",
    "predict",
    "resolve_device",
    "to_torch_state",
    "train_epoch",
    "train_step",
]
