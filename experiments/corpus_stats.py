"""Print the corpus statistics of d2l 8.2-8.3 and one minibatch of each sampling scheme.

python -m experiments.corpus_stats [--path FILE] [--batch-size 2] [--num-steps 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

from numpy_ref.corpus import read_time_machine
from numpy_ref.data import SeqDataLoader, load_corpus_time_machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="corpus file (default: the book's)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    lines = read_time_machine(args.path)
    chars, char_vocab = load_corpus_time_machine(token="char", path=args.path)
    words, word_vocab = load_corpus_time_machine(token="word", path=args.path)
    print(f"lines: {len(lines):,}   first: {lines[0]!r}")
    print(f"char corpus: {len(chars):,} tokens, vocabulary {len(char_vocab)}")
    print(f"word corpus: {len(words):,} tokens, vocabulary {len(word_vocab)}")
    print("most frequent words:", word_vocab.token_freqs[:10])
    print("char vocabulary:", "".join(char_vocab.idx_to_token[1:]))

    corpus, _ = load_corpus_time_machine(max_tokens=10_000, path=args.path)
    for use_random_iter, name in ((True, "random sampling"), (False, "sequential partitioning")):
        loader = SeqDataLoader(corpus, args.batch_size, args.num_steps, use_random_iter, args.seed)
        X, Y = next(iter(loader))
        print(f"\n{name}, first batch (B={args.batch_size}, T={args.num_steps}):")
        for x, y in zip(X, Y, strict=True):
            x_text = "".join(char_vocab.to_tokens(x))
            y_text = "".join(char_vocab.to_tokens(y))
            print(f"  X {x.tolist()} {x_text!r}\n  Y {y.tolist()} {y_text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
