"""Where a generative recommender and SASRec differ, by how often the target item was seen in
training: NDCG@10 and Recall@10 of validation and test targets in buckets of training
occurrences (cold-start: at most `siit.diagnostics.COLD_OCCURRENCES`; then 6-20; more than
20), for trained siit runs and for SASRec (`peers.py`) trained here on the same split.

    python benches/bench_by_popularity.py --dataset ../shared/data/office \\
        --runs benches/runs/office-item-mini+text+trie+dense-rqvae-s{0,1,2} --seeds 0 1 2

`--sasrec-from benches/results/by_popularity-office.json` reuses SASRec's recorded figures.

Writes benches/results/by_popularity-<dataset>.{json,md}: per model and split, each bucket's
share of targets and its metrics (mean ± spread over runs or seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from harness import machine_line, markdown_table, provenance, write_results
from siit.diagnostics import COLD_OCCURRENCES as COLD

# Buckets of training occurrences of a target's item: (name, lowest, highest).
BUCKETS = [(f"cold (<= {COLD})", 0, COLD), (f"{COLD + 1}-20", COLD + 1, 20), ("> 20", 21, None)]


def bucket_metrics(ranks: np.ndarray, occurrences: np.ndarray) -> dict[str, dict[str, float]]:
    """Recall@10 / NDCG@10 of first-hit ranks (-1: missed) over all targets and per bucket of
    their items' training occurrences, with each part's size."""
    from siit.metrics import ranking_metrics

    parts = {"all": np.ones(len(ranks), dtype=bool)}
    for name, lo, hi in BUCKETS:
        parts[name] = (occurrences >= lo) & (occurrences <= (hi if hi is not None else np.inf))
    out = {}
    for name, part in parts.items():
        metrics = ranking_metrics(ranks[part], recall_ks=(10,), ndcg_ks=(10,))
        out[name] = {"n": int(part.sum()), **metrics}
    return out


def siit_ranks(run: Path, dataset: str) -> dict[str, np.ndarray]:
    """Validation / test first-hit ranks of a trained run's best model on `dataset` (a path or
    name of the data it was trained on, read with the run's settings)."""
    import siit
    from siit.runs import load_run
    from siit.tasks import TaskBuilder
    from siit.training.evaluation import rank_samples

    cfg, rec, identifiers = load_run(run)
    if Path(cfg.dataset).name.lower() != Path(dataset).name.lower():
        raise SystemExit(f"{run} was trained on {cfg.dataset}, not {dataset}")
    data = siit.Dataset.load(dataset, max_history=cfg.data.max_history)
    tasks = TaskBuilder(
        rec, data, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    cfg = cfg.replace(progress=False)
    return {
        split: rank_samples(rec, tasks, identifiers, samples, cfg)[0]
        for split, samples in (("valid", data.valid_samples()), ("test", data.test_samples()))
    }


def sasrec_ranks(data, seed: int) -> dict[str, np.ndarray]:
    """Validation / test first-hit ranks of SASRec (the peer's settings) trained with `seed`."""
    import peers
    from siit.metrics import first_hit

    model, _ = peers.fit_sasrec(data, seed, log=lambda line: None)
    return {
        split: first_hit(peers._ranked(peers.scores(model, samples), None), samples.targets)
        for split, samples in (("valid", data.valid_samples()), ("test", data.test_samples()))
    }


def summary(per_run: list[dict], split: str, part: str, metric: str) -> str:
    values = np.array([r[split][part][metric] for r in per_run])
    return f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="the runs' dataset (a path or name)")
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="siit run folders")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="SASRec seeds")
    parser.add_argument(
        "--sasrec-from",
        type=Path,
        help="take SASRec's per-seed figures from this file's earlier run (its json) instead "
        "of training SASRec again (the split is the same, so are its figures)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import siit
    import torch

    torch.set_num_threads(args.threads)
    data = siit.Dataset.load(args.dataset, max_history=50)
    targets = data.train_samples().targets
    occurrences = np.bincount(targets, minlength=data.n_items)
    splits = {"valid": data.valid_samples(), "test": data.test_samples()}

    def scored(ranks: dict[str, np.ndarray]) -> dict:
        return {s: bucket_metrics(ranks[s], occurrences[splits[s].targets]) for s in splits}

    models: dict[str, list[dict]] = {}
    for run in args.runs:
        name = f"siit: {run.name.rsplit('-s', 1)[0]}"
        models.setdefault(name, []).append(scored(siit_ranks(run, args.dataset)))
        print(f"{run.name}: test NDCG@10 {models[name][-1]['test']['all']['ndcg@10']:.4f}")
    if args.sasrec_from:
        recorded = json.loads(args.sasrec_from.read_text())
        if Path(recorded["dataset"]).name.lower() != Path(args.dataset).name.lower():
            raise SystemExit(f"{args.sasrec_from} is about {recorded['dataset']}")
        models["SASRec"] = recorded["models"]["SASRec"]
        print(f"SASRec: {len(models['SASRec'])} seeds from {args.sasrec_from}")
    for seed in [] if args.sasrec_from else args.seeds:
        models.setdefault("SASRec", []).append(scored(sasrec_ranks(data, seed)))
        test = models["SASRec"][-1]["test"]["all"]["ndcg@10"]
        print(f"SASRec seed {seed}: test NDCG@10 {test:.4f}")

    info = provenance()
    parts = ["all", *(name for name, _, _ in BUCKETS)]
    lines = [
        f"NDCG@10 (Recall@10) of {data.name}'s targets by their item's training occurrences, "
        f"mean ± spread over runs / seeds; {machine_line(info)}.",
        "",
    ]
    if args.sasrec_from:
        when = recorded["provenance"]["date"]
        lines[-1:-1] = [f"SASRec's rows: its seeds as run for {args.sasrec_from.name} ({when})."]
    for split in splits:
        first = next(iter(models.values()))[0][split]
        shares = ", ".join(
            f"{p} {first[p]['n']} ({first[p]['n'] / first['all']['n']:.0%})" for p in parts[1:]
        )
        lines += [f"**{split}** ({first['all']['n']} targets: {shares})", ""]
        rows = [
            [name, len(runs)]
            + [
                f"{summary(runs, split, p, 'ndcg@10')} ({summary(runs, split, p, 'recall@10')})"
                for p in parts
            ]
            for name, runs in models.items()
        ]
        lines += markdown_table(["model", "runs", *parts], rows, right=set(range(1, 6))) + [""]
    payload = dict(provenance=info, dataset=args.dataset, buckets=BUCKETS, models=models)
    write_results(f"by_popularity-{Path(args.dataset).name}", payload, lines)


if __name__ == "__main__":
    main()
