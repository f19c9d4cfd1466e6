"""Constrained decoding speed and agreement of token-level models: the project's beam search
with the prompt shared by a user's beams (the default), the same search on transformers'
per-beam cache, the trie tables as a LogitsProcessor in `generate`, and the public baseline
(`generate(prefix_allowed_tokens_fn=...)` over a nested-dict trie).

    python benches/bench_decoding.py --run runs/<gpt-mini run> --models gpt-mini t5-mini

Settings: MovieLens-100K's real catalogue (1,682 items; the `--run` model where its preset
matches, else an untrained one) and random catalogues of `--catalogue` sizes with the same
codebooks (untrained models: speed only). Every method decodes the same prompts (test
histories) with the same beams, at each of `--threads`; "same top-k" counts users whose
ranked item lists equal the shared-prompt search's. Writes benches/results/decoding.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import siit
import torch
from harness import machine_line, markdown_table, provenance, write_results
from siit.decoding import (
    TrieLogitsProcessor,
    TrieTables,
    beam_search,
    dict_trie_allowed_fn,
    generate,
)
from siit.models import build_model
from siit.runs import load_run
from siit.tasks import TaskBuilder
from siit.training import load_dataset

SHARED = "siit beam_search, shared prompt"
NOTES = [
    "Notes:",
    "",
    "- Shared prompt against per-beam cache: the same network, the same beams and items; the "
    "per-beam path is transformers' cache, which copies the prompt's keys/values for each of "
    "the 20 beams at every step.",
    "- `generate` on a decoder-only model runs the whole prompt once per beam; on T5 it runs "
    "the encoder once per user, so there the gap is the decoder steps only, and both pay the "
    "same encoder pass over 150 prompt tokens, which bounds the ratio (4-6x here).",
    "- The dict-trie baseline (`prefix_allowed_tokens_fn`) scores beams by a softmax over the "
    "whole vocabulary, not over each level's codes, so its ranking differs from the level "
    "softmax the models are trained with (same top-k 0/32): it is a speed baseline; "
    "`TrieLogitsProcessor` returns the same beams as siit.",
    "- Catalogue size barely moves siit's cost: a step is a gather in the trie tables.",
]


def _items(identifiers: siit.Identifiers, codes: np.ndarray) -> np.ndarray:
    trie = siit.IdentifierTrie(identifiers.codes, identifiers.codebook_sizes)
    return trie.lookup(codes.reshape(-1, codes.shape[-1])).reshape(codes.shape[:2])


def _decode_all(fn, prompt: np.ndarray, batch: int) -> np.ndarray:
    """Items (U, K) of every user, `batch` users per call."""
    parts = [fn(prompt[lo : lo + batch]) for lo in range(0, len(prompt), batch)]
    return np.concatenate(parts)


def compare(setting, rec, identifiers, prompt, args, threads) -> list[dict]:
    start = 1 if rec.kind == "seq2seq" else prompt.shape[1]
    tables = TrieTables.of(identifiers, rec.device)
    beams = args.beams

    def items_of(result) -> np.ndarray:
        return result.items if result.items is not None else _items(identifiers, result.codes)

    methods = {
        SHARED: lambda p: beam_search(rec, p, beams, tables).items,
        "siit beam_search, per-beam cache": lambda p: (
            beam_search(rec, p, beams, tables, shared_prompt=False).items
        ),
        "generate + TrieLogitsProcessor": lambda p: items_of(
            generate(rec, p, beams, logits_processor=[TrieLogitsProcessor(tables, rec, start)])
        ),
    }
    setup = time.perf_counter()
    allowed = dict_trie_allowed_fn(identifiers, rec, start)
    dict_setup = time.perf_counter() - setup
    methods["generate + prefix_allowed_tokens_fn (dict trie)"] = lambda p: items_of(
        generate(rec, p, beams, prefix_allowed_tokens_fn=allowed)
    )
    rows, reference = [], None
    torch.set_num_threads(threads)
    for method, fn in methods.items():
        ours = method.startswith("siit")
        users = prompt if ours else prompt[: args.baseline_users]
        fn(users[: args.batch])  # warm-up
        best, items = float("inf"), None
        for _ in range(args.repeat if ours else 1):
            t0 = time.perf_counter()
            items = _decode_all(fn, users, args.batch)
            best = min(best, time.perf_counter() - t0)
        if reference is None:
            reference = items
        same = int((items == reference[: len(items)]).all(axis=1).sum())
        row = dict(
            setting=setting,
            model=rec.model.config.model_type,
            threads=threads,
            method=method,
            users=len(users),
            beams=beams,
            ms_per_user=round(1000 * best / len(users), 3),
            users_per_s=round(len(users) / best, 1),
            same_topk=f"{same}/{len(items)}",
            invalid=int((items < 0).sum()),
        )
        if method.endswith("(dict trie)"):
            row["setup_s"] = round(dict_setup, 3)
        rows.append(row)
        print(row, flush=True)
    shared = rows[0]["ms_per_user"]
    for row in rows:
        row["x_slower_than_shared"] = round(row["ms_per_user"] / shared, 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="a finished token-level run on MovieLens-100K")
    parser.add_argument("--models", nargs="+", default=["gpt-mini", "t5-mini"])
    parser.add_argument("--users", type=int, default=256, help="users decoded by siit")
    parser.add_argument(
        "--baseline-users", type=int, default=32, help="users decoded by the generate methods"
    )
    parser.add_argument("--batch", type=int, default=64, help="users per decoding call")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--catalogue", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--repeat", type=int, default=2, help="siit: best of this many passes (generate: one)"
    )
    args = parser.parse_args()

    trained = load_run(args.run) if args.run else None
    data = load_dataset("movielens", 50)
    identifiers = trained[2] if trained else None
    if identifiers is None:
        identifiers = siit.CIDTokenizer(levels=3, codebook_size=32).fit(data)
    rng = np.random.default_rng(0)
    catalogues = [("MovieLens-100K", identifiers)]
    for n in args.catalogue:
        sizes = [256] * identifiers.n_levels
        flat = rng.choice(int(np.prod(sizes, dtype=np.float64)), size=n, replace=False)
        codes = np.stack(np.unravel_index(flat, sizes), 1)
        catalogues.append((f"random, {n:,} items", siit.Identifiers(codes, sizes)))
    results = []
    for name in args.models:
        for label, ids in catalogues:
            if trained and trained[0].model == name and ids is identifiers:
                rec, how = trained[1], f"trained {name} ({Path(args.run).name})"
            else:
                rec = build_model(name, ids.codebook_sizes, ids.prefixes, siit.item_texts(data))
                how = f"untrained {name}"
            # MovieLens histories as prompts; in a random catalogue, item i's identifier is
            # its row i
            shown = ids
            if ids.n_items != data.n_items:
                shown = siit.Identifiers(
                    ids.codes[: data.n_items], ids.codebook_sizes, data.item_ids, ids.prefixes
                )
            prompt, _ = TaskBuilder(rec, data, shown).seqrec(
                data.test_samples().histories[: args.users]
            )
            setting = f"{label}: {ids.n_items:,} items, {how}"
            for threads in args.threads:
                results += compare(setting, rec, ids, prompt, args, threads)

    meta = dict(
        provenance=provenance(),
        beams=args.beams,
        batch=args.batch,
        users=args.users,
        baseline_users=args.baseline_users,
        repeat=args.repeat,
    )
    header = ["setting", "threads", "method", "ms / user", "users / s", "x of shared"]
    header += ["same top-k", "invalid", "dict setup (s)"]
    table = [
        [
            r["setting"],
            r["threads"],
            r["method"],
            f"{r['ms_per_user']:.2f}",
            f"{r['users_per_s']:.0f}",
            f"{r['x_slower_than_shared']:.1f}",
            r["same_topk"],
            r["invalid"],
            r.get("setup_s", ""),
        ]
        for r in results
    ]
    lines = [
        f"Decoding {args.batch} users x {args.beams} beams per call, MovieLens-100K test "
        f"histories as prompts; siit decodes {args.users} users, `generate` "
        f"{args.baseline_users} (one pass; siit: best of {args.repeat}). "
        f"{machine_line(meta['provenance'])}",
        "",
        *markdown_table(header, table, right={1, 3, 4, 5, 6, 7, 8}),
        "",
        *NOTES,
    ]
    write_results("decoding", dict(meta=meta, rows=results), lines)


if __name__ == "__main__":
    main()
