"""One interface over the three implementations, so that a run does not care which one it drives.

``numpy`` and ``jax`` are the twin API of ``numpy_ref`` and ``rnn_jax`` (docs/architecture.md);
``torch`` is :mod:`experiments.torch_ref`. A backend holds the model in its own form (a dict of
NumPy arrays, of JAX arrays, an ``nn.Module``) and gives back NumPy parameters for checkpoints.
JAX and PyTorch are imported only when their backend is asked for.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

import numpy_ref
from experiments.run.config import ConfigError, RunConfig
from numpy_ref.loops import EpochStats
from numpy_ref.spec import ModelSpec, Params


class ImplUnavailableError(ConfigError):
    """The implementation asked for cannot run here (a missing optional package, a bad device)."""


class Backend:
    """The interface; see :class:`NumpyBackend` for the meaning of each method."""

    impl: str
    device: str  # the book's name: cpu:0, cuda:0

    def prepare(self, spec: ModelSpec, params: Params) -> Any:
        raise NotImplementedError

    def train_epoch(
        self, model: Any, loader: Any, lr: float, theta: float, use_random_iter: bool
    ) -> tuple[Any, EpochStats]:
        raise NotImplementedError

    def evaluate(self, model: Any, loader: Any) -> float:
        raise NotImplementedError

    def predict(self, model: Any, prefix: str, num_preds: int, vocab: Any) -> str:
        raise NotImplementedError

    def to_numpy(self, model: Any) -> Params:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The device, in words, and the versions that matter for this backend."""
        raise NotImplementedError


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_description() -> str:
    import os

    return f"{_cpu_name()} ({os.cpu_count()} CPUs)"


class NumpyBackend(Backend):
    """``numpy_ref``: the parameters are a dict of NumPy arrays; the CPU only."""

    impl = "numpy"
    device = "cpu:0"

    def __init__(self, config: RunConfig) -> None:
        self.spec: ModelSpec | None = None

    def prepare(self, spec: ModelSpec, params: Params) -> Any:
        self.spec = spec
        return params

    def train_epoch(
        self, model: Any, loader: Any, lr: float, theta: float, use_random_iter: bool
    ) -> tuple[Any, EpochStats]:
        return numpy_ref.train_epoch(self.spec, model, loader, lr, theta, use_random_iter)

    def evaluate(self, model: Any, loader: Any) -> float:
        return float(numpy_ref.evaluate(self.spec, model, loader))

    def predict(self, model: Any, prefix: str, num_preds: int, vocab: Any) -> str:
        return numpy_ref.predict(prefix, num_preds, self.spec, model, vocab)

    def to_numpy(self, model: Any) -> Params:
        return model

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "machine": cpu_description(),
                "versions": {"numpy": np.__version__}}  # fmt: skip


class JaxBackend(Backend):
    """``rnn_jax``: the parameters are a dict of JAX arrays placed on the chosen device."""

    impl = "jax"

    def __init__(self, config: RunConfig) -> None:
        try:
            import jax

            import rnn_jax
        except ImportError as err:
            raise ImplUnavailableError(
                f"--impl jax needs JAX, which cannot be imported here ({err}); "
                f"pip install -e . installs it"
            ) from err
        self._jax, self._rnn_jax = jax, rnn_jax
        try:
            self._device = rnn_jax.get_device(config.device)
        except ValueError as err:  # rnn_jax's DeviceError: the flag as typed, and the fix
            reason = getattr(err, "reason", err)
            raise ImplUnavailableError(f"--impl jax --device {config.device}: {reason}") from err
        self.device = rnn_jax.device_name(self._device)
        self.spec: ModelSpec | None = None

    @property
    def jax_device(self) -> Any:
        """The ``jax.Device`` the runs are placed on (a population: its platform's devices)."""
        return self._device

    def prepare(self, spec: ModelSpec, params: Params) -> Any:
        self.spec = spec
        return self._rnn_jax.to_jax(params, self._device)

    def train_epoch(
        self, model: Any, loader: Any, lr: float, theta: float, use_random_iter: bool
    ) -> tuple[Any, EpochStats]:
        params, stats = self._rnn_jax.train_epoch(
            self.spec, model, loader, lr, theta, use_random_iter
        )
        return params, stats

    def evaluate(self, model: Any, loader: Any) -> float:
        return float(self._rnn_jax.evaluate(self.spec, model, loader))

    def predict(self, model: Any, prefix: str, num_preds: int, vocab: Any) -> str:
        return self._rnn_jax.predict(prefix, num_preds, self.spec, model, vocab)

    def to_numpy(self, model: Any) -> Params:
        return self._jax.tree_util.tree_map(np.asarray, model)

    def describe(self) -> dict[str, Any]:
        import jaxlib
        import optax

        kind = getattr(self._device, "device_kind", "")
        machine = cpu_description() if self._device.platform == "cpu" else kind
        return {
            "device": self.device,
            "machine": machine,
            "versions": {"numpy": np.__version__, "jax": self._jax.__version__,
                         "jaxlib": jaxlib.__version__, "optax": optax.__version__},
        }  # fmt: skip


class TorchBackend(Backend):
    """:mod:`experiments.torch_ref`: the model is an ``nn.Module`` (scratch or concise)."""

    impl = "torch"

    def __init__(self, config: RunConfig) -> None:
        try:
            from experiments import torch_ref  # TorchUnavailableError says how to install it

            self._device = torch_ref.resolve_device(config.device)
        except (ImportError, ValueError) as err:
            raise ImplUnavailableError(f"--impl torch: {err}") from err
        self._ref = torch_ref
        self.flavour = config.torch_model
        self.device = torch_ref.device_name(self._device)
        self.spec: ModelSpec | None = None

    def prepare(self, spec: ModelSpec, params: Params) -> Any:
        self.spec = spec
        return self._ref.make_model(spec, params, self.flavour, self._device)

    def train_epoch(
        self, model: Any, loader: Any, lr: float, theta: float, use_random_iter: bool
    ) -> tuple[Any, EpochStats]:
        model, stats = self._ref.train_epoch(model, loader, lr, theta, use_random_iter)
        return model, stats

    def evaluate(self, model: Any, loader: Any) -> float:
        return self._ref.evaluate(model, loader)

    def predict(self, model: Any, prefix: str, num_preds: int, vocab: Any) -> str:
        return self._ref.predict(prefix, num_preds, model, vocab)

    def to_numpy(self, model: Any) -> Params:
        return model.to_params()

    def describe(self) -> dict[str, Any]:
        import torch

        if self._device.type == "cuda":
            machine = torch.cuda.get_device_name(self._device)
        else:
            machine = cpu_description()
        return {
            "device": self.device,
            "machine": machine,
            "torch_model": self.flavour,
            "versions": {"numpy": np.__version__, "torch": torch.__version__},
        }


BACKENDS = {"numpy": NumpyBackend, "jax": JaxBackend, "torch": TorchBackend}


def make_backend(config: RunConfig) -> Backend:
    """The backend of ``config.impl``; :class:`ImplUnavailableError` if it cannot run here."""
    return BACKENDS[config.impl](config)
