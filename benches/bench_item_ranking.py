"""Ranking a catalogue with an item-level model: exact top-k (every level scored per trie
node, the last level pruned by the prefix bound), full exact scores of every item, and
trie-constrained beam search on the same heads, over catalogue sizes. Where the exact
top-k stops paying is where `eval_mode="auto"` switches to beam search.

The model is item-mini with random weights whose code embeddings are spread (std 1), so its
distributions are peaked as a trained model's are, or left at their initial std 0.02
("flat", as in the first epochs of training, where the prefix bound prunes least). How
often the bound sends a user to another pass (under up to 8x as many nodes) and to full
scoring is reported too. Each case runs in a fresh subprocess, which reports its peak
resident memory.

    python benches/bench_item_ranking.py --threads 2

Writes benches/results/item_ranking.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import machine_line, provenance

OUT = Path(__file__).parent / "results"
CASES = [(1_682, 3, 32), (2_420, 3, 256), (100_000, 3, 256), (1_000_000, 3, 256)]


def measure(
    n_items: int, levels: int, size: int, method: str, users: int, threads: int, weights: str
) -> dict:
    import siit
    import torch
    from siit.decoding import TrieTables, beam_search
    from siit.models import build_model
    from siit.models.item_level import TOP_K_CANDIDATES

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    keys = rng.choice(size**levels, n_items, replace=False)
    codes = np.stack([(keys // size ** (levels - 1 - t)) % size for t in range(levels)], 1)
    identifiers = siit.Identifiers(codes, [size] * levels)
    # the code-by-code ranking the recorded tables measured (item-mini's dense head adds
    # one (users x items) product to it)
    model = build_model(
        "item-mini", identifiers.codebook_sizes, identifiers.prefixes, dense_head=False
    )
    if weights == "peaked":
        with torch.no_grad():
            model.model.codes.weight.normal_(0, 1.0)
    tables = TrieTables.of(identifiers)
    histories = rng.integers(0, n_items, size=(users, 50))
    prompt = model.code_tokens(identifiers.codes[histories])
    batch = 64
    again_users = full_users = 0
    start = time.perf_counter()
    for lo in range(0, users, batch):
        part = prompt[lo : lo + batch]
        if method == "exact top-k":
            model.top_k(part, tables, 20)
        elif method == "full scores":
            model.item_log_probs(part, tables).topk(20, dim=1)
        else:
            beam_search(model, part, 20, tables)
    seconds = time.perf_counter() - start
    if method == "exact top-k":  # how many users the bound sent to a second pass, in full
        net, last = model.model, levels - 1
        first = min(TOP_K_CANDIDATES, len(tables.codes[levels - 2]))
        heads, scored = net.level_log_probs, []

        def counting(query, level, allowed=None):  # the last level's queries (users, nodes, d)
            if level == last and query.dim() == 3:
                scored.append((query.shape[0], query.shape[1]))
            return heads(query, level, allowed)

        net.level_log_probs = counting
        for lo in range(0, users, batch):
            model.top_k(prompt[lo : lo + batch], tables, 20, candidates=first)
        every = len(tables.codes[levels - 2])
        full_users = sum(b for b, n in scored if n == every and n != first)
        again_users = sum(b for b, n in scored if n not in (first, every))
    return dict(
        items=n_items,
        identifiers=f"{levels} x {size}",
        weights=weights,
        method=method,
        users=users,
        users_per_second=round(users / seconds, 1),
        ms_per_user=round(1000 * seconds / users, 3),
        widenings_per_user=round(again_users / users, 3) if method == "exact top-k" else None,
        full_scoring_share=round(full_users / users, 3) if method == "exact top-k" else None,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(**json.loads(args.case), threads=args.threads)))
        return
    rows = []
    # the cost of full scores and of beam search does not depend on the weights
    methods = [
        ("exact top-k", "peaked"),
        ("exact top-k", "flat"),
        ("full scores", "peaked"),
        ("beam search (20)", "peaked"),
    ]
    for n_items, levels, size in CASES:
        for method, weights in methods:
            users = args.users if n_items < 500_000 or method != "full scores" else 64
            case = dict(
                n_items=n_items,
                levels=levels,
                size=size,
                method=method,
                users=users,
                weights=weights,
            )
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--case",
                json.dumps(case),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    info = provenance()
    machine = machine_line(info)
    OUT.mkdir(exist_ok=True)
    (OUT / "item_ranking.json").write_text(
        json.dumps(dict(provenance=info, threads=args.threads, rows=rows), indent=1)
    )
    lines = [
        f"Item-level ranking, item-mini (random weights: code embeddings spread to std 1, "
        f"'peaked' as a trained model's distributions, or at their initial std 0.02, 'flat' as "
        f"in the first epochs), 50-item histories, batches of 64 users, top 20, "
        f"{args.threads} thread(s), {machine}.",
        "",
        "| items | identifiers | weights | method | users/s | ms/user | widening passes per "
        "user | users scored in full | peak RSS MB |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        again, full = (
            ("-", "-")
            if r["full_scoring_share"] is None
            else (f"{r['widenings_per_user']:.2f}", f"{r['full_scoring_share']:.0%}")
        )
        lines.append(
            f"| {r['items']:,} | {r['identifiers']} | {r['weights']} | {r['method']} "
            f"| {r['users_per_second']:.0f} | {r['ms_per_user']:.2f} | {again} | {full} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    (OUT / "item_ranking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
