"""Baseline vs SIIT: test Recall@10 / NDCG@10 over datasets, initial tokenizers and seeds.

Each (dataset, tokenizer) pair is tokenized once (seed 0) and every arm starts from those
identifiers, so the comparison is paired: the baseline (`rounds=0`) trains as many epochs
as SIIT's rounds together. Runs go to benches/runs/ as `siit train` subprocesses, several
at a time with one thread each; a finished run is not repeated, so the script resumes.
SIIT is reported twice: at its best round (chosen on validation, as `siit.train` does) and
at its last round (`siit evaluate --at last`), the fixed schedule the baseline also runs.

    python benches/bench_siit.py --datasets movielens ../shared/data/office \
        --tokenizers rqvae cid --seeds 0 1 2 --jobs 2

Writes benches/results/siit.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RUNS = HERE / "runs"
OUT = HERE / "results"


def tokenize(dataset: str, tokenizer: str, levels: int, size: int, dry: bool = False) -> Path:
    name = Path(dataset).name
    path = RUNS / "identifiers" / f"{name}-{tokenizer}-{levels}x{size}.npz"
    if not path.exists() and not dry:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "ml-100k" if dataset == "movielens" else dataset
        cmd = [
            sys.executable,
            "-m",
            "siit",
            "tokenize",
            "--data",
            data,
            "--method",
            tokenizer,
            "--levels",
            str(levels),
            "--codebook-size",
            str(size),
            "--out",
            str(path),
            "--device",
            "cpu",
        ]
        subprocess.run(cmd, check=True)
    return path


def finished(arm: dict) -> dict | None:
    metrics = Path(arm["output_dir"]) / "metrics.json"
    if metrics.exists() and json.loads(metrics.read_text()).get("test"):
        return json.loads(metrics.read_text())
    return None


def run(arm: dict) -> dict:
    done = finished(arm)
    if done is not None:
        return done
    out = Path(arm["output_dir"])
    config = out.with_suffix(".json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(arm["settings"], indent=1))
    resume = ["--resume", str(out)] if (out / "checkpoint" / "state.json").exists() else []
    cmd = [sys.executable, "-m", "siit", "train"]
    cmd += resume or ["--config", str(config)]
    log = out.with_suffix(".log")
    start = time.time()
    with log.open("a") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT)
    print(f"{out.name}: {time.time() - start:.0f} s", flush=True)
    return json.loads((out / "metrics.json").read_text())


def last_round(arm: dict) -> dict | None:
    """Test metrics of a finished SIIT run's final round (its last checkpoint): the fixed
    schedule, without choosing a round on validation, which on a few hundred users is noisy
    and picks less-trained rounds."""
    out = Path(arm["output_dir"])
    path = out / "test-last-round.json"
    if arm["settings"]["rounds"] == 0 or finished(arm) is None:
        return None
    if not path.exists():
        cmd = [sys.executable, "-m", "siit", "evaluate", str(out), "--at", "last"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        path.write_text(done.stdout)
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["movielens"])
    parser.add_argument("--tokenizers", nargs="+", default=["rqvae", "cid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    parser.add_argument("--settings", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only summarize the runs that finished (and test their last rounds)",
    )
    args = parser.parse_args()
    common = dict(model="t5-mini", threads=1, progress=False, device="cpu", max_history=20)
    common.update(json.loads(args.settings))
    sizes = {"rqvae": (3, 256), "cid": (3, 32)}

    arms = []
    for dataset in args.datasets:
        for tokenizer in args.tokenizers:
            levels, size = sizes[tokenizer]
            index = tokenize(dataset, tokenizer, levels, size, dry=args.report)
            for seed in args.seeds:
                for label, rounds in (("baseline", 0), ("siit", args.rounds)):
                    epochs = args.epochs_per_round * (1 if rounds else args.rounds + 1)
                    name = f"{Path(dataset).name}-{tokenizer}-{label}-s{seed}"
                    settings = dict(
                        common,
                        dataset=dataset,
                        tokenizer=str(index),
                        seed=seed,
                        rounds=rounds,
                        max_epochs_per_round=epochs,
                        patience=None,
                        output_dir=str(RUNS / name),
                    )
                    arms.append(
                        dict(
                            dataset=Path(dataset).name,
                            tokenizer=tokenizer,
                            arm=label,
                            seed=seed,
                            output_dir=str(RUNS / name),
                            settings=settings,
                        )
                    )
    # seed-major order: an interrupted grid still covers every (dataset, tokenizer) pair
    arms.sort(key=lambda arm: arm["seed"])
    if args.report:
        results = [finished(arm) for arm in arms]
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run, arms))
    with ThreadPoolExecutor(args.jobs) as pool:
        lasts = list(pool.map(last_round, arms))

    rows = []
    for arm, metrics, last in zip(arms, results, lasts, strict=True):
        if metrics is None:
            continue
        row = dict(
            dataset=arm["dataset"],
            tokenizer=arm["tokenizer"],
            arm=arm["arm"],
            seed=arm["seed"],
            epochs=sum(r["epochs"] for r in metrics["rounds"]),
            best_round=metrics["best_round"],
            test=metrics["test"],
            rounds=metrics["rounds"],
        )
        rows.append(row)
        if last is not None:
            final = metrics["config"]["rounds"]
            rows.append(dict(row, arm="siit, last round", best_round=final, test=last))
    OUT.mkdir(exist_ok=True)
    (OUT / "siit.json").write_text(
        json.dumps(dict(settings=common, arms=len(arms), rows=rows), indent=1)
    )
    lines = [
        "| dataset | initial identifiers | arm | epochs | seeds | Recall@10 | NDCG@10 | Recall@20 "
        "| round tested per seed |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["tokenizer"], row["arm"]), []).append(row)
    for (dataset, tokenizer, arm), group in groups.items():

        def stat(key: str, group=group) -> str:
            values = np.array([g["test"][key] for g in group])
            return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"

        best = ",".join(str(g["best_round"]) for g in group)
        lines.append(
            f"| {dataset} | {tokenizer} | {arm} | {group[0]['epochs']} | {len(group)} | "
            f"{stat('recall@10')} | "
            f"{stat('ndcg@10')} | {stat('recall@20')} | {best} |"
        )
    (OUT / "siit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
