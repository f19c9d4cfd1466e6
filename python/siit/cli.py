"""The `siit` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

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
    from siit.training import make_tokenizer

    options = {"unique": args.unique}
    if args.method == "file":
        if args.index is None:
            raise ValueError("--method file needs --index PATH")
        return make_tokenizer(args.index, args.levels, args.codebook_size, args.seed, **options)
    if args.method in ("rqvae", "letter"):
        options.update(epochs=args.epochs, device=args.device)
    return make_tokenizer(args.method, args.levels, args.codebook_size, args.seed, **options)


def _tokenize(args: argparse.Namespace) -> int:
    dataset = Dataset.load(args.data)
    tokenizer = _tokenizer(args)
    identifiers = tokenizer.fit(dataset)  # logs its report
    print(f"wrote {identifiers.save(args.out)}")
    return 0


def _settings(args: argparse.Namespace) -> dict:
    from siit.config import parse_override

    return dict(parse_override(item) for item in args.settings)


def _train(args: argparse.Namespace) -> int:
    from siit.api import train
    from siit.config import TrainConfig

    settings = _settings(args)
    config = None
    if args.config is not None:
        if args.resume is not None:
            raise ValueError(
                "--config and --resume exclude each other: a resumed run keeps its config"
            )
        config = TrainConfig.from_file(args.config)
    try:
        result = train(config=config, resume=args.resume, **settings)
    except KeyboardInterrupt:
        return 130
    print(result)
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from siit.api import evaluate

    start = time.perf_counter()
    metrics = evaluate(args.run_dir, args.dataset, args.split, args.at, **_settings(args))
    if args.json:
        print(json.dumps(metrics, indent=1))
        return 0
    print(
        f"{args.run_dir} ({args.at}), {args.split}: NDCG@10 {metrics['ndcg@10']:.4f}, "
        f"Recall@10 {metrics['recall@10']:.4f}, NDCG@20 {metrics['ndcg@20']:.4f}, "
        f"Recall@20 {metrics['recall@20']:.4f} ({time.perf_counter() - start:.1f} s; "
        "--json for every metric)"
    )
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from siit.serving import recommend

    if args.indices:
        bad = [h for h in args.history if not h.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"--indices takes integer item indices, got {bad[0]!r}")
    history = [int(h) for h in args.history] if args.indices else args.history
    found = recommend(
        history, args.k, args.run_dir, args.device, not args.include_history, args.indices
    )
    for item, score in found:
        print(f"{item}\t{score:.4f}")
    return 0


def _print_settings(args: argparse.Namespace) -> int:
    from siit.settings_doc import markdown, text

    sys.stdout.write(markdown() if args.markdown else text())
    return 0


def _add_items(args: argparse.Namespace) -> int:
    from siit.files import read_json
    from siit.new_items import add_items

    items = read_json(Path(args.items))
    if not isinstance(items, dict):
        raise ValueError(f"{args.items}: expected an object of item id -> text fields")
    added = add_items(args.run_dir, items, args.device, args.beams)
    own = int((added.rank >= 0).sum())
    print(
        f"added {len(added.item_ids)} items: {own} got one of their own beams, "
        f"{len(added.item_ids) - own} the nearest free identifier; catalogue: {added.path}"
    )
    return 0


class _DefaultsHelp(argparse.HelpFormatter):
    """Every option's help shows its default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="siit",
        description="Self-improving item tokenization (SIIT) for generative recommendation.",
        epilog="Each command has its own --help; `siit settings` lists every training setting.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = partial(commands.add_parser, formatter_class=_DefaultsHelp)
    demo = command("demo", help="run the Rust core on generated identifiers")
    demo.add_argument("--items", type=int, default=200_000, help="number of items")
    demo.add_argument("--levels", type=int, default=3, help="codes per identifier")
    demo.add_argument("--candidates", type=int, default=20, help="candidates per item")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(run=_demo)
    data = command("data", help="datasets").add_subparsers(dest="action", required=True)
    stats = data.add_parser("stats", help="print a dataset's statistics")
    stats.add_argument("source", help='a dataset folder, or "ml-100k"')
    stats.set_defaults(run=_data_stats)
    tokenize = command("tokenize", help="initial identifiers for a dataset's items")
    tokenize.add_argument("--data", required=True, help='a dataset folder, or "ml-100k"')
    tokenize.add_argument(
        "--method",
        required=True,
        choices=["rqvae", "letter", "cid", "random", "file"],
        help="the initial tokenizer, or file to read --index",
    )
    tokenize.add_argument("--out", required=True, help=".json (index.json layout) or .npz")
    tokenize.add_argument("--index", help="identifiers file for --method file")
    tokenize.add_argument("--levels", type=int, default=3, help="codes per identifier")
    tokenize.add_argument("--codebook-size", type=int, default=256, help="codes per level")
    tokenize.add_argument("--epochs", type=int, default=200, help="rqvae/letter training")
    tokenize.add_argument(
        "--unique",
        choices=["nearest", "suffix"],
        default="nearest",
        help="collisions: the nearest free identifier, or a TIGER-style extra level",
    )
    tokenize.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    tokenize.add_argument("--seed", type=int, default=0, help="random seed")
    tokenize.set_defaults(run=_tokenize)
    overrides = (
        "settings as name=value (values read as JSON), e.g. rounds=2 refine=paper "
        "tasks='{\"seqrec\": 1}'; `siit settings` lists them all with their defaults"
    )
    train = command(
        "train",
        help="train a recommender (and SIIT rounds)",
        description="Train a generative recommender; with rounds=N, N SIIT refinement rounds.",
        epilog="Settings: `siit settings` prints every setting with its default and meaning "
        "(also docs/settings.md). Examples: `siit train`, `siit train rounds=2`, "
        "`siit train dataset=path/to/data tokenizer=rqvae model=gpt-small`.",
    )
    train.add_argument("--config", help="a .toml, .yaml or .json file of settings")
    train.add_argument("--resume", metavar="DIR", help="continue a run from its checkpoint")
    train.add_argument("settings", nargs="*", help=overrides)
    train.set_defaults(run=_train)
    evaluate = command("evaluate", help="metrics of a run's best round or last checkpoint")
    evaluate.add_argument("run_dir", metavar="RUN", help="the run directory")
    evaluate.add_argument(
        "--split", choices=["test", "valid"], default="test", help="leave-one-out split"
    )
    evaluate.add_argument("--dataset", help="dataset spec (default: the run's)")
    evaluate.add_argument(
        "--at",
        choices=["best", "last"],
        default="best",
        help="the best round's model or the last checkpoint's",
    )
    evaluate.add_argument(
        "settings",
        nargs="*",
        help="evaluation settings as name=value: beams, mode (auto, beam or exact), "
        "batch_size, exclude_history, device, threads",
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print every metric as JSON, not one line"
    )
    evaluate.set_defaults(run=_evaluate)
    recommend = command("recommend", help="next items after a history")
    recommend.add_argument("run_dir", metavar="RUN", help="the run directory")
    recommend.add_argument("history", nargs="+", help="item ids, oldest first")
    recommend.add_argument("-k", type=int, default=10, help="items to recommend")
    recommend.add_argument(
        "--indices", action="store_true", help="the history holds 0-based item indices, not ids"
    )
    recommend.add_argument("--device", default="cpu", help="torch device")
    recommend.add_argument(
        "--include-history",
        action="store_true",
        help="allow items of the history in the list (left out by default)",
    )
    recommend.set_defaults(run=_recommend)
    add = command("add-items", help="identifiers for new items from their text, without retraining")
    add.add_argument("run_dir", metavar="RUN", help="the run directory")
    add.add_argument("items", help="JSON object of item id -> text fields (NAME.item.json layout)")
    add.add_argument("--beams", type=int, default=None, help="default: the run's refine_beams")
    add.add_argument("--device", default="cpu", help="torch device")
    settings = command("settings", help="every training setting with its default")
    settings.add_argument(
        "--markdown", action="store_true", help="the markdown table of docs/settings.md"
    )
    settings.set_defaults(run=_print_settings)
    add.set_defaults(run=_add_items)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args(argv)
    if args.command == "demo" and (args.items < 1 or args.levels < 2 or args.candidates < 2):
        parser.error("demo needs --items >= 1, --levels >= 2 and --candidates >= 2")
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError) as e:  # bad input: the message names it
        parser.exit(2, f"siit: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
