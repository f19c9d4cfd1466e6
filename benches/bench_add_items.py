"""New items without retraining, measured: hold back a random 10% of a dataset's items
(every interaction with them removed before training), train on the rest with RQ-VAE
identifiers and the item2id task, then `siit.add_items` the held-back items from their text.
Reports how many got one of their own beams, and how often their first code agrees with the
first code the run's RQ-VAE gives their text embeddings (and the agreement a random code
would have, for scale).

    python benches/bench_add_items.py --dataset ../shared/data/office

Writes benches/results/add_items.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import siit
import torch

HERE = Path(__file__).parent
OUT = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="../shared/data/office")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default='{"patience": 5, "valid_users": 2000}')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = siit.Dataset.load(args.dataset, max_history=50)
    rng = np.random.default_rng(args.seed)
    held = np.sort(rng.choice(full.n_items, round(args.share * full.n_items), replace=False))
    keep = np.setdiff1d(np.arange(full.n_items), held)
    new_index = np.full(full.n_items, -1)
    new_index[keep] = np.arange(len(keep))
    sequences = []
    for user in range(full.n_users):
        seq = new_index[full.sequence(user)]
        sequences.append(seq[seq >= 0].tolist())
    removed = int(np.isin(full.items, held).sum())
    train_data = siit.Dataset(
        sequences,
        [full.item_text[i] for i in keep],
        [full.item_ids[i] for i in keep],
        full.user_ids,
        max_history=50,
        name=f"{full.name}-without-{len(held)}",
    )
    vectors = siit.embed(siit.item_texts(full))
    tokenizer = siit.RQVAETokenizer(levels=3, codebook_size=256, embeddings=vectors[keep])
    run = HERE / "runs" / f"add-items-{full.name}-s{args.seed}"
    start = time.perf_counter()
    settings = dict(
        tasks={"seqrec": 1.0, "item2id": 1.0},
        rounds=0,
        seed=args.seed,
        threads=args.threads,
        progress=False,
        device="cpu",
        **json.loads(args.settings),
    )
    result = siit.train(train_data, tokenizer, output_dir=run, **settings)
    train_minutes = (time.perf_counter() - start) / 60
    start = time.perf_counter()
    records = {full.item_ids[i]: full.item_text[i] for i in held}
    added = siit.add_items(run, records)
    add_seconds = time.perf_counter() - start
    with torch.no_grad():
        model = tokenizer.model_
        z = model.encoder(torch.as_tensor(vectors[held], dtype=torch.float32))
        rq_first = model.quantize(z)[0][:, 0].numpy()
    agree = float((added.codes[:, 0] == rq_first).mean())
    usage = np.bincount(result.identifiers.codes[:, 0], minlength=256) / len(keep)
    chance = float(usage[rq_first].mean())  # a first code drawn as often as the kept items use it
    row = dict(
        dataset=full.name,
        items=full.n_items,
        held_back=len(held),
        interactions_removed=removed,
        train_minutes=round(train_minutes, 1),
        test=result.test,
        add_seconds=round(add_seconds, 2),
        own_beam=int((added.rank >= 0).sum()),
        best_beam=int((added.rank == 0).sum()),
        fallback=int((added.rank < 0).sum()),
        first_code_agrees_with_rqvae=agree,
        first_code_agreement_by_usage=chance,
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} thread(s)",
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "add_items.json").write_text(json.dumps(row, indent=1))
    lines = [
        f"{row['dataset']}: {row['held_back']} of {row['items']} items held back "
        f"({removed} interactions removed), gpt-mini trained on the rest with RQ-VAE 3 x 256 "
        f"identifiers, seqrec + item2id, in {row['train_minutes']} min ({row['machine']}).",
        "",
        "| items added | own beam | best beam | nearest free instead | first code = RQ-VAE's "
        "| same, by code usage | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(held)} | {row['own_beam']} | {row['best_beam']} | {row['fallback']} | "
        f"{agree:.3f} | {chance:.3f} | {row['add_seconds']} |",
    ]
    (OUT / "add_items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
