"""Where the arrays live: choosing a JAX device, naming it as the book does, placing parameters.

The computation runs where its parameters are: :func:`to_jax` puts a parameter dict on a device,
and the training and evaluation loops put each minibatch next to the parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from numpy_ref.spec import Params

_GPU_NAMES = ("gpu", "cuda")


def _gpus() -> list[Any]:
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jaxlib, or no GPU on the machine
        return []


class DeviceError(ValueError):
    """A device name that is not one, or names a device that JAX does not see here.

    Attributes:
        device: the name as given (``"cpu:3"``).
        reason: what is wrong and the fix, without the name (a command prefixes its flag).
    """

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device}: {reason}")
        self.device, self.reason = device, reason


def get_device(device: str | None = "auto") -> Any:
    """A ``jax.Device`` from a name.

    Args:
        device: ``"auto"`` or ``None`` (the book's ``try_gpu()``: the first GPU, else the CPU),
            ``"cpu"``, ``"gpu"`` / ``"cuda"`` (the first GPU), or an indexed ``"cpu:N"``,
            ``"gpu:N"``, ``"cuda:N"``.

    Returns:
        The device.

    Raises:
        DeviceError: (a ``ValueError``) the name is unknown, or names a device that JAX does not
            see here (never a silent fall-back to the CPU).
    """
    if device is None or device == "auto":
        gpus = _gpus()
        return gpus[0] if gpus else jax.devices("cpu")[0]
    name, _, index_text = str(device).partition(":")
    if name not in ("cpu", *_GPU_NAMES) or (index_text and not index_text.isdigit()):
        raise DeviceError(device, "not a device name: use auto, cpu, gpu, cuda, or cpu:N / cuda:N")
    index = int(index_text or 0)
    if name == "cpu":
        cpus = list(jax.devices("cpu"))
        if index >= len(cpus):
            raise DeviceError(
                device,
                f"JAX has {len(cpus)} CPU device(s) here, only cpu:0 to "
                f"cpu:{len(cpus) - 1}: use cpu",
            )
        return cpus[index]
    gpus = _gpus()
    if index >= len(gpus):
        found = f"only cuda:0 to cuda:{len(gpus) - 1}" if gpus else "none"
        raise DeviceError(
            device,
            f"JAX sees {len(gpus)} GPU(s) here ({found}; backend "
            f"{jax.default_backend()}): use cpu, or on a GPU machine a jaxlib with GPU support "
            f"(.venv/bin/pip install 'jax[cuda12]')",
        )
    return gpus[index]


def device_name(device: Any) -> str:
    """The book's name of a device: ``cpu:0``, ``cuda:0``."""
    platform = "cuda" if device.platform in _GPU_NAMES else device.platform
    index = getattr(device, "local_hardware_id", None)
    return f"{platform}:{device.id if index is None else index}"


def device_of(params: Params) -> Any:
    """The device holding ``params`` (the default device for NumPy arrays)."""
    leaf = params["W_hq"]
    if isinstance(leaf, jax.Array):
        devices = leaf.devices()
        if len(devices) == 1:
            return next(iter(devices))
    return jax.devices()[0]


def to_jax(params: Params, device: str | Any | None = "auto") -> Params:
    """A copy of ``params`` as JAX arrays on ``device``, in new buffers (safe to donate: the
    caller's arrays stay valid).

    Args:
        params: a parameter dict of NumPy or JAX arrays.
        device: a name for :func:`get_device`, or a ``jax.Device``.

    Returns:
        The same dict of JAX arrays, dtypes kept.

    Raises:
        ValueError: float64 arrays while JAX's x64 mode is off (JAX would make them float32).
    """
    target = get_device(device) if device is None or isinstance(device, str) else device
    for leaf in jax.tree.leaves(params):
        if np.dtype(leaf.dtype) == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "params are float64 but JAX's x64 mode is off, so they would become float32: "
                "run under `with jax.enable_x64(True):` or set JAX_ENABLE_X64=1"
            )
    return jax.device_put(params, target, may_alias=False)
