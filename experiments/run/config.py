"""What one experiment is: the book's sections and their defaults, and the settings of one run.

``SECTIONS`` holds the book's settings (d2l, PyTorch edition, chapters 8-9): every section trains
on ``load_data_time_machine(32, 35, max_tokens=10000)`` for 500 epochs with clipping theta 1;

| section | book | model | hidden | layers | lr | iteration |
| --- | --- | --- | --- | --- | --- | --- |
| rnn_scratch | 8.5 | rnn | 512 | 1 | 1 | sequential, then random |
| rnn_concise | 8.6 | rnn | 256 | 1 | 1 | sequential |
| gru | 9.1 | gru (reset before) | 256 | 1 | 1 | sequential |
| lstm | 9.2 | lstm | 256 | 1 | 1 | sequential |
| deep_rnn | 9.3 | lstm | 256 | 2 | 2 | sequential |

The deep RNN's lr of 2 is the book's ``num_epochs, lr = 500, 2`` in 9.3 (d2l-en 0.17 / d2l-zh 2.0,
``chapter_recurrent-modern/deep-rnn.md``, the same line for every framework).

Iteration schemes (``RunConfig.iter``):

- ``seq``: sequential partitioning, the state carried across minibatches (gradient cut);
- ``random``: true random sampling, the state zeroed for every minibatch;
- ``book-random``: what the book's "random iteration" run of 8.5 really does, since it passes
  ``use_random_iter=True`` to training but keeps the loader built for sequential partitioning:
  sequential batches, the state zeroed for every minibatch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from numpy_ref.checks import is_int, is_positive

IMPLS = ("numpy", "jax", "torch")
ITERS = ("seq", "random", "book-random")
TORCH_MODELS = ("scratch", "concise")
QUICK_EPOCHS = 10


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting (as its flag) and the fix."""


@dataclass(frozen=True)
class Section:
    """One book section: its model and the book's training settings."""

    name: str
    book: str  # section number in d2l's PyTorch edition
    title: str
    kind: str
    num_hiddens: int
    num_layers: int = 1
    lr: float = 1.0
    num_epochs: int = 500
    iters: tuple[str, ...] = ("seq",)  # run one after the other by default
    torch_model: str = "concise"  # PyTorch model for --impl torch (a "before" GRU forces scratch)


SECTIONS = {
    s.name: s
    for s in (
        Section(
            "rnn_scratch",
            "8.5",
            "RNN from scratch",
            "rnn",
            512,
            iters=("seq", "random"),
            torch_model="scratch",
        ),
        Section("rnn_concise", "8.6", "Concise RNN", "rnn", 256),
        Section("gru", "9.1", "Gated recurrent units", "gru", 256),
        Section("lstm", "9.2", "Long short-term memory", "lstm", 256),
        Section("deep_rnn", "9.3", "Deep RNN (2-layer LSTM)", "lstm", 256, num_layers=2, lr=2.0),
    )
}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one run (one implementation, one iteration scheme).

    Defaults are the book's; :func:`section_config` fills in a section's model.
    """

    section: str
    kind: str
    num_hiddens: int
    out: str  # the run directory
    impl: str = "numpy"
    num_layers: int = 1
    gru_reset: str = "before"  # the book's GRU; "after" is PyTorch/cuDNN's
    lr: float = 1.0
    theta: float = 1.0  # gradient clipping threshold
    num_epochs: int = 500
    batch_size: int = 32
    num_steps: int = 35
    max_tokens: int = 10_000  # training tokens, from the start of the text (the book's 10,000)
    val_fraction: float = 0.1  # held out from the end of the whole text; 0 turns it off
    iter: str = "seq"
    seed: int = 0  # fixes the initial weights and every minibatch, whatever the impl
    device: str | None = None  # None: the book's try_gpu() (first GPU, else CPU)
    torch_model: str = "concise"
    overwrite: bool = False
    data_path: str | None = None  # corpus file, absolute; None: $RNN_LM_DATA_DIR, cache, download
    data_sha1: str | None = None  # SHA-1 of the text trained on (recorded when the run starts)
    predict_every: int = 10  # epochs between two printed continuations of "time traveller"
    num_preds: int = 50
    checkpoint_every: int = 10  # epochs between checkpoints (also after epoch 1 and the last)
    val_every: int = 10  # epochs between two validations (also after the last)
    max_perplexity: float | None = None  # a training perplexity above it is a divergence;
    # None: 4 x the vocabulary size (uniform guessing scores the vocabulary size)
    command: str = ""  # the command line, recorded in summary.json
    resumed_at: tuple[int, ...] = ()  # the epochs this run was resumed from (--resume)

    @property
    def use_random_iter(self) -> bool:
        """Whether training zeroes the state for every minibatch."""
        return self.iter in ("random", "book-random")

    @property
    def loader_random(self) -> bool:
        """Whether the loader samples randomly (only ``random``; ``book-random`` is sequential)."""
        return self.iter == "random"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The config a run directory or checkpoint saved (:meth:`to_dict`); fields added since
        take their defaults, unknown ones (``format``, ``spec``) are ignored."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["resumed_at"] = tuple(values.get("resumed_at", ()))
        return cls(**values)

    def divergence_limit(self, vocab_size: int) -> float:
        """The training perplexity above which the run counts as diverged."""
        return self.max_perplexity if self.max_perplexity is not None else 4.0 * vocab_size


def section_config(name: str, **overrides: Any) -> RunConfig:
    """The book's settings of section ``name``, with ``overrides`` (None values are ignored).

    ``iter`` must be a single scheme here; ``out`` defaults to ``runs/<section>[-<iter>]-<impl>``
    (the iteration is named when the section runs several by default or it is not ``seq``).
    """
    if name not in SECTIONS:
        raise ConfigError(f"unknown section {name!r}: choose one of {', '.join(SECTIONS)}")
    section = SECTIONS[name]
    values: dict[str, Any] = {
        "section": name,
        "kind": section.kind,
        "num_hiddens": section.num_hiddens,
        "num_layers": section.num_layers,
        "lr": section.lr,
        "num_epochs": section.num_epochs,
        "iter": section.iters[0],
        "torch_model": section.torch_model,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "torch_model" not in overrides or overrides["torch_model"] is None:
        if values["kind"] == "gru" and values.get("gru_reset", "before") == "before":
            values["torch_model"] = "scratch"  # nn.GRU is the "after" variant
    if values.get("out") is None:
        values["out"] = default_run_dir(name, values["iter"], values.get("impl", "numpy"))
    config = RunConfig(**values)
    validate(config)
    return config


def default_run_dir(
    section: str, iter_: str, impl: str, named: bool = False, population: bool = False
) -> str:
    """``runs/<section>[-<iter>]-<impl>[-pop]``; the iteration is named when ``named``, when the
    section runs several by default, or when it is not ``seq``; ``-pop`` for a population."""
    named = named or len(SECTIONS[section].iters) > 1 or iter_ != "seq"
    name = f"runs/{section}-{iter_}-{impl}" if named else f"runs/{section}-{impl}"
    return f"{name}-pop" if population else name


def validate(config: RunConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad setting (by its command-line flag)."""
    checks = (
        ("--impl", config.impl, config.impl in IMPLS, f"one of {', '.join(IMPLS)}"),
        ("--iter", config.iter, config.iter in ITERS, f"one of {', '.join(ITERS)}"),
        (
            "--torch-model",
            config.torch_model,
            config.torch_model in TORCH_MODELS,
            f"one of {', '.join(TORCH_MODELS)}",
        ),
        (
            "--gru-reset",
            config.gru_reset,
            config.gru_reset in ("before", "after"),
            "'before' or 'after'",
        ),
        ("--hidden", config.num_hiddens, is_int(config.num_hiddens), "an integer >= 1"),
        ("--layers", config.num_layers, is_int(config.num_layers), "an integer >= 1"),
        ("--epochs", config.num_epochs, is_int(config.num_epochs), "an integer >= 1"),
        ("--batch-size", config.batch_size, is_int(config.batch_size), "an integer >= 1"),
        ("--num-steps", config.num_steps, is_int(config.num_steps), "an integer >= 1"),
        ("--lr", config.lr, is_positive(config.lr), "a number > 0"),
        ("--theta", config.theta, is_positive(config.theta), "a number > 0"),
        (
            "--val-fraction",
            config.val_fraction,
            isinstance(config.val_fraction, (int, float)) and 0 <= config.val_fraction < 1,
            "a fraction in [0, 1) (0 turns validation off)",
        ),
        (
            "--max-tokens",
            config.max_tokens,
            is_int(config.max_tokens) or config.max_tokens == -1,
            "an integer >= 1, or -1 for the whole training part",
        ),
        ("--seed", config.seed, is_int(config.seed, 0), "an integer >= 0"),
        ("predict_every", config.predict_every, is_int(config.predict_every), "an integer >= 1"),
        (
            "--checkpoint-every",
            config.checkpoint_every,
            is_int(config.checkpoint_every),
            "an integer >= 1",
        ),
        ("--val-every", config.val_every, is_int(config.val_every), "an integer >= 1"),
        (
            "--max-perplexity",
            config.max_perplexity,
            config.max_perplexity is None or is_positive(config.max_perplexity),
            "a finite number > 0",
        ),
    )
    for flag, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{flag} must be {expected}, got {value!r}")
    if config.impl == "numpy" and config.device not in (None, "cpu", "cpu:0"):
        raise ConfigError(
            f"--device {config.device}: numpy_ref runs on the CPU only (cpu or cpu:0); use "
            f"--device cpu, "
            f"or --impl jax / --impl torch for an accelerator"
        )
    if (
        config.impl == "torch"
        and config.torch_model == "concise"
        and config.kind == "gru"
        and config.gru_reset == "before"
    ):
        raise ConfigError(
            "--torch-model concise runs nn.GRU, which applies the reset gate after the recurrent "
            "product; the book's GRU (--gru-reset before) needs --torch-model scratch, or use "
            "--gru-reset after"
        )
