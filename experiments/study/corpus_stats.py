"""Print the corpus statistics of d2l 8.2-8.3 and one minibatch of each sampling scheme.

python -m experiments.corpus_stats [--data FILE] [--batch-size 2] [--num-steps 5] [--seed 0]

Bad input (a missing, empty or unreadable corpus, no corpus offline, a size below 1) ends with one
line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments.run import signals
from experiments.run.config import ConfigError
from experiments.run.flags import NON_NEGATIVE, POSITIVE, Parser
from numpy_ref.corpus import read_time_machine
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine


def report(path: str | None, batch_size: int, num_steps: int, seed: int) -> list[str]:
    """The lines to print; ``ValueError``/``OSError``/``RuntimeError`` for a corpus that fails."""
    lines = read_time_machine(path)
    chars, char_vocab = load_corpus_time_machine(token="char", path=path)
    words, word_vocab = load_corpus_time_machine(token="word", path=path)
    out = [
        f"lines: {len(lines):,}   first: {lines[0]!r}",
        f"char corpus: {len(chars):,} tokens, vocabulary {len(char_vocab)}",
        f"word corpus: {len(words):,} tokens, vocabulary {len(word_vocab)}",
        f"most frequent words: {word_vocab.token_freqs[:10]}",
        f"char vocabulary: {''.join(char_vocab.idx_to_token[1:])}",
    ]
    corpus = chars[:10_000]
    for use_random_iter, name in ((True, "random sampling"), (False, "sequential partitioning")):
        loader = SeqDataLoader(corpus, batch_size, num_steps, use_random_iter, seed)
        X, Y = next(iter(loader))
        out.append(f"\n{name}, first batch (B={batch_size}, T={num_steps}):")
        for x, y in zip(X, Y, strict=True):
            x_text = "".join(char_vocab.to_tokens(x))
            y_text = "".join(char_vocab.to_tokens(y))
            out.append(f"  X {x.tolist()} {x_text!r}\n  Y {y.tolist()} {y_text!r}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command (module docstring); a signal ends it at once with exit 130 or 143."""
    prog = "experiments.corpus_stats"
    with signals.stopping(prog):
        return _main(argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    parser = Parser(prog=f"python -m {prog}", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="corpus file (default: the book's)")
    parser.add_argument("--batch-size", type=POSITIVE, default=2)
    parser.add_argument("--num-steps", type=POSITIVE, default=5)
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)
    try:
        args = parser.parse_args(argv)
        lines = report(args.data, args.batch_size, args.num_steps, args.seed)
    except (ConfigError, OSError, RuntimeError, ValueError) as err:
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
