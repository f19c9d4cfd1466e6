"""New items without retraining, measured: hold back a random 10% of a dataset's items
(every interaction with them removed before training) and train on the rest with RQ-VAE
identifiers, then give the held-back items identifiers from their text in two ways:

- item2id: a run trained with seqrec + item2id; `siit.add_items` beam-searches each item's
  identifier from its item2id prompt.
- mapper: a run trained with seqrec alone; a `TextMapper` fitted on the run's catalogue
  (best/index.json identifiers of the kept items, their text embeddings) proposes
  identifiers, and `siit.assign_unique` places them with every existing identifier reserved.

Reports how many got one of their own beams, and how often their first code agrees with the
first code the RQ-VAE gives their text embeddings (and the agreement a random code would
have, for scale).

    python benches/bench_add_items.py --dataset ../shared/data/office [--rows mapper]

Writes benches/results/add_items.{json,md}; a row not run keeps its figures from the
existing add_items.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import siit
import torch
from harness import settings_arg
from siit.mapper import TextMapper

HERE = Path(__file__).parent
OUT = HERE / "results"
ROWS = ("item2id", "mapper")
BEAMS = 20  # the refinement beams (TrainConfig.refine.beams), which add_items uses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="../shared/data/office")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default='{"schedule.patience": 5, "eval.valid_users": 2000}')
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of rows")
    args = parser.parse_args()
    rows = args.rows.split(",")
    if not rows or set(rows) - set(ROWS):
        parser.error(f"--rows must name some of {ROWS}, got {args.rows!r}")
    torch.set_num_threads(args.threads)
    # Each row records what it ran on: a row not rerun keeps its own.
    provenance = dict(
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} thread(s)",
        commit=_git("rev-parse", "HEAD")
        + (" + uncommitted changes" if _git("status", "-s") else ""),
        versions=dict(siit=siit.__version__, torch=torch.__version__, numpy=np.__version__),
    )
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
    identifiers = tokenizer.fit(train_data)  # one fit: both runs start from these
    with torch.no_grad():
        model = tokenizer.model_
        z = model.encoder(torch.as_tensor(vectors[held], dtype=torch.float32))
        rq_first = model.quantize(z)[0][:, 0].numpy()
    records = {full.item_ids[i]: full.item_text[i] for i in held}
    settings = dict(
        rounds=0,
        seed=args.seed,
        threads=args.threads,
        progress=False,
        device="cpu",
        **settings_arg(args.settings),
    )

    def train(tasks: dict[str, float], name: str) -> tuple[siit.TrainResult, Path, float]:
        run = HERE / "runs" / f"{name}-{full.name}-s{args.seed}"
        start = time.perf_counter()
        result = siit.train(
            train_data, identifiers, output_dir=run, **settings, **{"schedule.tasks": tasks}
        )
        return result, run, (time.perf_counter() - start) / 60

    def row(result, tasks, train_minutes, codes, rank, seconds, **extra) -> dict:
        usage = np.bincount(result.identifiers.codes[:, 0], minlength=256) / len(keep)
        return dict(
            tasks=tasks,
            train_minutes=round(train_minutes, 1),
            test=result.test,
            add_seconds=round(seconds, 2),
            own_beam=int((rank >= 0).sum()),
            best_beam=int((rank == 0).sum()),
            fallback=int((rank < 0).sum()),
            first_code_agrees_with_rqvae=float((codes[:, 0] == rq_first).mean()),
            # a first code drawn as often as the kept items use it
            first_code_agreement_by_usage=float(usage[rq_first].mean()),
            **extra,
            **provenance,
        )

    previous = OUT / "add_items.json"
    results = json.loads(previous.read_text()).get("rows", {}) if previous.is_file() else {}
    if "item2id" in rows:
        result, run, minutes = train({"seqrec": 1.0, "item2id": 1.0}, "add-items")
        start = time.perf_counter()
        added = siit.add_items(run, records)
        seconds = time.perf_counter() - start
        results["item2id"] = row(
            result, "seqrec + item2id", minutes, added.codes, added.rank, seconds
        )
    if "mapper" in rows:
        result, run, minutes = train({"seqrec": 1.0}, "add-items-mapper")
        catalog = siit.Identifiers.load(run / "best" / "index.json", identifiers.codebook_sizes)
        position = {item: i for i, item in enumerate(full.item_ids)}
        rows_of = np.array([position[item] for item in catalog.item_ids])
        start = time.perf_counter()
        mapper = TextMapper.fit(vectors[rows_of], catalog.codes, catalog.codebook_sizes)
        fit_seconds = round(time.perf_counter() - start, 2)
        mapper.save(run / "best" / "text_mapper")
        start = time.perf_counter()
        mapper = TextMapper.load(run / "best" / "text_mapper")
        new_vectors = siit.embed(siit.item_texts(list(records.values())), progress=False)
        candidates, scores = mapper.propose(new_vectors, BEAMS)
        codes, rank = siit.assign_unique(
            candidates, scores, catalog.codebook_sizes, reserved=catalog.codes
        )
        seconds = time.perf_counter() - start
        results["mapper"] = row(
            result, "seqrec", minutes, codes, rank, seconds, mapper_fit_seconds=fit_seconds
        )

    out = dict(
        dataset=full.name,
        items=full.n_items,
        held_back=len(held),
        interactions_removed=removed,
        beams=BEAMS,
        rows=results,
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "add_items.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"{out['dataset']}: {len(held)} of {out['items']} items held back ({removed} "
        f"interactions removed); gpt-mini trained on the rest with RQ-VAE 3 x 256 identifiers. "
        f"{BEAMS} beams per new item; the mapper's add seconds include its load and the "
        "(cached) text embeddings of the new items.",
        "",
        "| identifiers from | run's tasks | train min | test NDCG@10 | own beam | best beam "
        "| nearest free instead | first code = RQ-VAE's | same, by code usage | mapper fit s "
        "| add s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ROWS:
        if name not in results:
            continue
        r = results[name]
        lines.append(
            f"| {'item2id model' if name == 'item2id' else 'text mapper'} | {r['tasks']} | "
            f"{r['train_minutes']} | {r['test']['ndcg@10']:.4f} | {r['own_beam']} | "
            f"{r['best_beam']} | {r['fallback']} | {r['first_code_agrees_with_rqvae']:.3f} | "
            f"{r['first_code_agreement_by_usage']:.3f} | {r.get('mapper_fit_seconds', '')} | "
            f"{r['add_seconds']} |"
        )
    lines.append("")
    for name in ROWS:
        if name in results:
            r = results[name]
            lines.append(
                f"- {name}: {r['machine']}; commit {r['commit']}; "
                + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
            )
    (OUT / "add_items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout.strip()


if __name__ == "__main__":
    main()
