"""One interface over the three implementations, so that a run does not care which one it drives.

``numpy`` and ``jax`` are the twin API of ``numpy_ref`` and ``rnn_jax`` (docs/architecture.md);
``torch`` is :mod:`experiments.torch_ref`. A backend holds the model in its own form (a dict of
NumPy arrays, of JAX arrays, an ``nn.Module``) and gives back NumPy parameters for checkpoints.
JAX and PyTorch are imported only when their backend is asked for.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence
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

    def group(
        self, spec: ModelSpec, params: Sequence[Params], configs: Sequence[Any], data: Any
    ) -> Any:
        """What the host loop trains (:mod:`experiments.run.loop`): here one member, trained by
        this backend's epoch (:class:`StepGroup`)."""
        (first,) = params
        return StepGroup(self, spec, first, configs[0])


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
        return {
            "device": self.device,
            "machine": cpu_description(),
            "versions": {"numpy": np.__version__},
        }


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
                f"`make venv` installs it into .venv"
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

    def group(
        self,
        spec: ModelSpec,
        params: Sequence[Params],
        configs: Sequence[Any],
        data: Any,
        place: Any = None,
    ) -> Any:
        """Every member in one compiled program (:class:`JaxGroup`), on this backend's device
        unless ``place`` says otherwise."""
        from numpy_ref.population import max_batches
        from rnn_jax.epoch import Placement

        base = configs[0]
        shape = (base.batch_size, base.num_steps)
        steps = max_batches(len(data.train.corpus), *shape, base.loader_random)
        val = 0 if data.val_corpus is None else max_batches(len(data.val_corpus), *shape, False)
        place = place or Placement(None, len(params), range(len(params)), self._device)
        return JaxGroup(spec, params, configs, (steps, val), place)

    def describe(self) -> dict[str, Any]:
        import jaxlib
        import optax

        kind = getattr(self._device, "device_kind", "")
        machine = cpu_description() if self._device.platform == "cpu" else kind
        return {
            "device": self.device,
            "machine": machine,
            "versions": {
                "numpy": np.__version__,
                "jax": self._jax.__version__,
                "jaxlib": jaxlib.__version__,
                "optax": optax.__version__,
            },
        }


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


# --- groups: what the host loop (experiments.run.loop) trains in lockstep ---------------------


class Stop(Exception):
    """Raised by a group between two chunks (or minibatches) when the run is asked to stop."""


class Stoppable:
    """A loader that raises :class:`Stop` before handing out a minibatch once
    ``stop()`` turns True (a backend that steps minibatch by minibatch)."""

    def __init__(self, loader: Any, stop: Callable[[], bool] | None) -> None:
        self.loader, self.stop = loader, stop or (lambda: False)
        self.use_random_iter = loader.use_random_iter

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in self.loader:
            if self.stop():
                raise Stop
            yield batch


class StepGroup:
    """One member trained by its backend's epoch (numpy_ref's or PyTorch's loop over steps).

    ``snapshot()`` is the NumPy parameters of the last complete epoch (numpy: the epoch's own
    result; torch: a copy, since the module trains in place)."""

    def __init__(self, backend: Backend, spec: ModelSpec, params: Params, config: Any) -> None:
        self.backend, self.lr, self.theta = backend, config.lr, config.theta
        self.model = backend.prepare(spec, params)
        self.last = params

    def train_epoch(
        self, loaders: list[Any], use_random_iter: bool, stop: Callable[[], bool] | None
    ) -> list[EpochStats]:
        (loader,) = loaders
        self.model, stats = self.backend.train_epoch(
            self.model, Stoppable(loader, stop), self.lr, self.theta, use_random_iter
        )
        self.last = self.backend.to_numpy(self.model)
        return [stats]

    def evaluate(self, loaders: list[Any]) -> list[float]:
        return [self.backend.evaluate(self.model, loaders[0])]

    def predict(self, prefixes: Sequence[str], num_preds: int, vocab: Any) -> list[list[str]]:
        return [[self.backend.predict(self.model, p, num_preds, vocab) for p in prefixes]]

    def snapshot(self) -> Params:
        return self.last

    def to_numpy(self, snapshot: Params) -> list[Params]:
        return [snapshot]


class JaxGroup:
    """M members (M = 1: a single run) as one compiled program per chunk of an epoch
    (:mod:`rnn_jax.epoch`); ``snapshot()`` is the device arrays of the last complete epoch."""

    def __init__(
        self,
        spec: ModelSpec,
        params: Sequence[Params],
        configs: Sequence[Any],
        steps: tuple[int, int],
        place: Any,
    ) -> None:
        from rnn_jax import epoch

        self._epoch, self.spec = epoch, spec
        rates = [(c.lr, c.theta) for c in configs]
        self.members = epoch.Members.create(spec, list(params), rates, place)
        self.shape = (configs[0].batch_size, configs[0].num_steps)
        self.steps, self.val_steps = steps

    def train_epoch(
        self, loaders: list[Any], use_random_iter: bool, stop: Callable[[], bool] | None
    ) -> list[EpochStats]:
        try:
            return self._epoch.train_epoch(
                self.members, loaders, use_random_iter, self.shape, self.steps, stop=stop
            )
        except self._epoch.Stopped:
            raise Stop from None

    def evaluate(self, loaders: list[Any]) -> list[float]:
        return self._epoch.evaluate(self.members, loaders, self.shape, self.val_steps)

    def predict(self, prefixes: Sequence[str], num_preds: int, vocab: Any) -> list[list[str]]:
        from rnn_jax.generation import predict_greedy

        return predict_greedy(
            prefixes, num_preds, self.spec, self.members.params, vocab, rows=self.members.place.rows
        )

    def snapshot(self) -> Any:
        return self.members.params

    def to_numpy(self, snapshot: Any) -> list[Params]:
        return self.members.to_numpy(snapshot)
