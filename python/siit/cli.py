"""The `siit` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from siit._core import IdentifierTrie, assign_unique, group_duplicates
from siit.data import Dataset


def _demo(args: argparse.Namespace) -> int:
    """Collisions in tokenizer-like identifiers, resolved by the core, then a trie over them."""
    rng = np.random.default_rng(args.seed)
    n, k, sizes = args.items, args.candidates, [256] * args.levels
    # Skewed code usage, as real tokenizers produce: low codes are far more popular.
    base = (rng.random((n, args.levels)) ** 2 * 256).astype(np.int64)

    t0 = time.perf_counter()
    _, counts = group_duplicates(base)
    t_group = time.perf_counter() - t0
    shared = int(counts[counts > 1].sum())
    print(f"{n:,} items, {args.levels} levels of 256 codes")
    print(
        f"group_duplicates: {len(counts):,} distinct identifiers, {shared:,} items share one "
        f"(largest group {counts.max()}) [{t_group * 1e3:.1f} ms]"
    )

    # k ranked candidates per item, as beam search would propose: vary the last level.
    cands = np.repeat(base[:, None, :], k, axis=1)
    cands[:, 1:, -1] = rng.integers(0, 256, size=(n, k - 1))
    scores = -np.cumsum(rng.random((n, k)), axis=1)
    t0 = time.perf_counter()
    codes, rank = assign_unique(cands, scores, sizes)
    t_assign = time.perf_counter() - t0
    print(
        f"assign_unique: {int((rank == 0).sum()):,} kept their best candidate, "
        f"{int((rank > 0).sum()):,} took a lower-ranked one, {int((rank < 0).sum()):,} fell back "
        f"[{t_assign * 1e3:.1f} ms]"
    )

    t0 = time.perf_counter()
    trie = IdentifierTrie(codes, sizes)
    t_build = time.perf_counter() - t0
    prefixes = codes[rng.integers(0, n, size=5120), : args.levels - 1]
    trie.allowed_mask(prefixes)  # warm-up: the first parallel call starts the thread pool
    t0 = time.perf_counter()
    mask = trie.allowed_mask(prefixes)
    t_mask = time.perf_counter() - t0
    assert (trie.lookup(codes) == np.arange(n)).all()
    print(
        f"IdentifierTrie: built in {t_build * 1e3:.1f} ms; allowed_mask for 5,120 beams in "
        f"{t_mask * 1e6:.0f} us ({mask.sum(axis=1).mean():.1f} allowed codes per beam)"
    )
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    print(Dataset.load(args.source))
    return 0


def _tokenizer(args: argparse.Namespace):
    """The tokenizer a `siit tokenize` command line asks for."""
    shape = {"levels": args.levels, "codebook_size": args.codebook_size}
    if args.method == "file":
        if args.index is None:
            raise ValueError("--method file needs --index PATH")
        from siit.tokenizers import FileTokenizer

        return FileTokenizer(args.index, unique=args.unique)
    if args.method == "random":
        from siit.tokenizers import RandomTokenizer

        return RandomTokenizer(**shape, seed=args.seed, unique=args.unique)
    if args.method == "cid":
        from siit.cid import CIDTokenizer

        return CIDTokenizer(**shape, seed=args.seed, unique=args.unique)
    from siit.letter import LETTERTokenizer
    from siit.rqvae import RQVAETokenizer

    kind = RQVAETokenizer if args.method == "rqvae" else LETTERTokenizer
    return kind(**shape, epochs=args.epochs, seed=args.seed, device=args.device, unique=args.unique)


def _tokenize(args: argparse.Namespace) -> int:
    dataset = Dataset.load(args.data)
    tokenizer = _tokenizer(args)
    identifiers = tokenizer.fit(dataset)  # logs its report
    print(f"wrote {identifiers.save(args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the Rust core on generated identifiers")
    demo.add_argument("--items", type=int, default=200_000, help="number of items")
    demo.add_argument("--levels", type=int, default=3, help="codes per identifier")
    demo.add_argument("--candidates", type=int, default=20, help="candidates per item")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    data = commands.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    stats = data.add_parser("stats", help="print a dataset's statistics")
    stats.add_argument("source", help='a dataset folder, or "ml-100k"')
    stats.set_defaults(run=_data_stats)
    tokenize = commands.add_parser("tokenize", help="initial identifiers for a dataset's items")
    tokenize.add_argument("--data", required=True, help='a dataset folder, or "ml-100k"')
    tokenize.add_argument(
        "--method", required=True, choices=["rqvae", "letter", "cid", "random", "file"]
    )
    tokenize.add_argument("--out", required=True, help=".json (index.json layout) or .npz")
    tokenize.add_argument("--index", help="identifiers file for --method file")
    tokenize.add_argument("--levels", type=int, default=3)
    tokenize.add_argument("--codebook-size", type=int, default=256)
    tokenize.add_argument("--epochs", type=int, default=200, help="rqvae/letter training")
    tokenize.add_argument("--unique", choices=["nearest", "suffix"], default="nearest")
    tokenize.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    tokenize.add_argument("--seed", type=int, default=0)
    tokenize.set_defaults(run=_tokenize)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args(argv)
    if args.command == "demo" and (args.items < 1 or args.levels < 2 or args.candidates < 2):
        parser.error("demo needs --items >= 1, --levels >= 2 and --candidates >= 2")
    try:
        return int(args.run(args))
    except ValueError as e:  # bad input: the message names the argument or file
        parser.exit(2, f"siit: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
