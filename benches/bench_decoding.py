"""Constrained decoding speed and agreement: the project's beam search on trie tables, the
same tables as a LogitsProcessor in `generate`, and the public baseline
(`generate(prefix_allowed_tokens_fn=...)` over a nested-dict trie), on one model and data.

    python benches/bench_decoding.py --run runs/ml-100k-...   # a finished run's best model
    python benches/bench_decoding.py --catalogue 100000        # + a large random catalogue

Writes benches/results/decoding.{json,md}. Every method decodes the same prompts with the
same beams; "same top-k" counts users whose ranked item lists are identical.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import siit
import torch
from siit.api import load_run
from siit.decoding import (
    TrieLogitsProcessor,
    TrieTables,
    beam_search,
    dict_trie_allowed_fn,
    generate,
)
from siit.models import build_model
from siit.tasks import TaskBuilder
from siit.trainer import load_dataset

OUT = Path(__file__).parent / "results"


def _time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _items(identifiers: siit.Identifiers, codes: np.ndarray) -> np.ndarray:
    trie = siit.IdentifierTrie(identifiers.codes, identifiers.codebook_sizes)
    return trie.lookup(codes.reshape(-1, codes.shape[-1])).reshape(codes.shape[:2])


def compare(name, rec, identifiers, prompt, beams, repeat, baseline=True) -> dict:
    start = 1 if rec.kind == "seq2seq" else prompt.shape[1]
    t_tables = time.perf_counter()
    tables = TrieTables.of(identifiers, rec.device)
    t_tables = time.perf_counter() - t_tables
    methods = {
        "siit beam_search": lambda: beam_search(rec, prompt, beams, tables),
        "generate + TrieLogitsProcessor": lambda: generate(
            rec, prompt, beams, logits_processor=[TrieLogitsProcessor(tables, rec, start)]
        ),
    }
    if baseline:
        t_dict = time.perf_counter()
        allowed = dict_trie_allowed_fn(identifiers, rec, start)
        t_dict = time.perf_counter() - t_dict
        methods["generate + prefix_allowed_tokens_fn (dict trie)"] = lambda: generate(
            rec, prompt, beams, prefix_allowed_tokens_fn=allowed
        )
    rows, reference = [], None
    for method, fn in methods.items():
        seconds, found = _time(fn, repeat)
        items = found.items if found.items is not None else _items(identifiers, found.codes)
        if reference is None:
            reference = items
        same = int((items == reference).all(axis=1).sum())
        rows.append(
            dict(
                setting=name,
                method=method,
                users=len(prompt),
                beams=beams,
                ms_per_user=1000 * seconds / len(prompt),
                same_topk=f"{same}/{len(prompt)}",
                invalid=int((items < 0).sum()),
            )
        )
        print(rows[-1])
    rows[0]["tables_s"] = t_tables
    if baseline:
        rows[-1]["tables_s"] = t_dict
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="a finished run (default: the newest under ./runs)")
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="users per decoding call")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--catalogue", type=int, nargs="*", default=[100_000])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg, rec, identifiers = load_run(args.run, args.device)
    data = load_dataset(cfg.dataset, cfg.max_history)
    tasks = TaskBuilder(rec, data, identifiers)
    samples = data.test_samples()
    prompt, _ = tasks.seqrec(samples.histories[: args.batch])
    results = []
    name = f"{data.name}, trained {cfg.model}, {identifiers.n_items} items"
    results += compare(name, rec, identifiers, prompt, args.beams, args.repeat)["rows"]

    # Catalogue scale: the same architecture over a large random catalogue (speed only).
    rng = np.random.default_rng(0)
    for n in args.catalogue:
        sizes = list(identifiers.codebook_sizes)
        flat = rng.choice(int(np.prod(sizes)), size=n, replace=False)
        codes = np.stack(np.unravel_index(flat, sizes), 1)
        big = siit.Identifiers(codes, sizes)
        model = build_model(cfg.model, sizes, identifiers.prefixes, ["item"], seed=0)
        model.model.to(args.device)
        name = f"random catalogue, untrained {cfg.model}, {n} items"
        results += compare(name, model, big, prompt, args.beams, args.repeat)["rows"]

    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    )
    meta = dict(device=device or platform.machine(), threads=args.threads, batch=args.batch)
    OUT.mkdir(exist_ok=True)
    (OUT / "decoding.json").write_text(json.dumps(dict(meta=meta, rows=results), indent=1))
    lines = [
        f"Decoding {args.batch} users x {args.beams} beams per call on {meta['device']} "
        f"({args.threads} threads); best of {args.repeat}.",
        "",
        "| setting | method | ms / user | same top-k as siit | invalid beams | trie setup (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        setup = f"{r['tables_s']:.3f}" if "tables_s" in r else ""
        lines.append(
            f"| {r['setting']} | {r['method']} | {r['ms_per_user']:.2f} | {r['same_topk']} | "
            f"{r['invalid']} | {setup} |"
        )
    (OUT / "decoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
