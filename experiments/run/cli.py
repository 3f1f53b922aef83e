"""The command line of a run: its exit codes, its one line on stderr, its progress bar.

Every command (the section scripts of :mod:`experiments.sections.command`, ``compare``, ``bench``,
``gradcheck``, ...) ends with one of these exit codes; every ending but success is one line on
stderr, never a traceback:

- 0 done;
- 2 bad input (a flag, a missing optional package, a corpus, an unusable ``--out`` or
  ``--resume``), before anything is written;
- 3 diverged: a non-finite or too high training perplexity (the last good checkpoint is kept);
- 130 / 143 interrupted by SIGINT / SIGTERM: the chunk of minibatches under way (numpy, torch:
  the minibatch) ends and the last completed epoch is saved; the line gives the command that
  resumes the run;
- 1 anything else, e.g. a file that could not be written (the last checkpoint is intact).
"""

from __future__ import annotations

import sys
from typing import Any

from experiments.run import signals
from experiments.run.config import RunConfig

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print one line on stderr; return ``code`` (bad input by default)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def stopped(prog: str, err: Exception, stop: signals.StopFlag) -> int:
    """The one line and exit code of a run that ended early (:class:`RunStopped`)."""
    from experiments.run.loop import RunDiverged, RunInterrupted

    message = " ".join(str(err).split())
    if isinstance(err, RunInterrupted):
        print(f"{prog}: {stop.name}: {message}", file=sys.stderr)
        return stop.exit_code
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_DIVERGED if isinstance(err, RunDiverged) else EXIT_FAILED


def run_with_progress(
    config: RunConfig, prepared: Any, label: str = "", stop: Any = None, resume: bool = False
) -> Any:
    """:func:`run_experiment` with a tqdm bar on stderr and the book's samples on stdout.

    ``label`` prefixes each printed sample (``compare`` names the implementation).
    """
    from tqdm import tqdm

    from experiments.run.records import EpochRecord
    from experiments.run.runner import run_experiment

    desc = f"{config.section} {config.impl} {config.iter}"
    done = config.resumed_at[-1] if resume else 0
    with tqdm(
        total=config.num_epochs,
        initial=done,
        desc=desc,
        unit="epoch",
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
    ) as bar:

        def on_epoch(record: EpochRecord) -> None:
            if record.sample is not None:
                bar.write(f"{label}{record.sample}", file=sys.stdout)
            postfix = {"ppl": f"{record.train_perplexity:.2f}"}
            if record.val_perplexity is not None:
                postfix["val"] = f"{record.val_perplexity:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

        return run_experiment(config, on_epoch, checked=prepared, stop=stop, resume=resume)
