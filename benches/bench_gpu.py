"""The GPU check of beauty with LETTER's published identifiers: the TIGER-size
encoder-decoder (t5-small) and the GPU decoder-only preset (gpt-small), each trained with
early stopping under a wall-clock cap per run, against LETTER-TIGER's published
Recall@10 / NDCG@10 (0.0672 / 0.0364) and the peers on the same split.

One script for a lent GPU (about 15 minutes of device time a task): every arm writes its
result as soon as it has one, so a run cut short still reports what finished.

    python benches/bench_gpu.py --data ../shared/data/beauty --out results-dir

`--models` and `--minutes` shrink it into a CPU smoke test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import siit
import torch

LETTER_TIGER = {"recall@10": 0.0672, "ndcg@10": 0.0364}
# Peers on this split (../shared/data/README.md): most popular and RecBole 1.2.1 SASRec.
PEERS = {
    "most popular": {"recall@10": 0.0107, "ndcg@10": 0.0051},
    "SASRec (RecBole)": {"recall@10": 0.0854, "ndcg@10": 0.0425},
}
# Per preset: what a GPU batch affords and how often to validate (on a fixed user subset).
ARMS = {
    "gpt-small": {
        "schedule": dict(batch_size=256, lr=1e-3, max_epochs_per_round=60),
        "eval.every": 2,
    },
    "t5-small": {
        "schedule": dict(batch_size=512, lr=2e-3, max_epochs_per_round=30),
        "eval.every": 2,
    },
    # CPU smoke test sizes
    "gpt-tiny": {
        "schedule": dict(batch_size=256, lr=2e-3, max_epochs_per_round=2),
        "eval.every": 1,
    },
    "t5-tiny": {"schedule": dict(batch_size=256, lr=2e-3, max_epochs_per_round=2), "eval.every": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="the beauty folder (Beauty.*.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="+", default=["gpt-small", "t5-small"])
    parser.add_argument("--minutes", nargs="+", type=float, default=[2.5, 3.5])
    parser.add_argument("--valid-users", type=int, default=3000)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", default="{}", help='JSON {"preset": {setting: value}}')
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = torch.cuda.get_device_name() if device == "cuda" else platform.machine()
    data = siit.Dataset.load(args.data, max_history=50)
    index = next(Path(args.data).glob("*.index.json"))
    results: dict = dict(machine=machine, dataset=data.name, identifiers=index.name, arms={})

    def save() -> None:
        (out / "gpu.json").write_text(json.dumps(results, indent=1, default=float))

    for model, minutes in zip(args.models, args.minutes, strict=True):
        settings = {
            **ARMS[model],
            "tokenizer": str(index),
            "identifiers": {"levels": 4, "codebook_size": 256},
            "model": model,
            "rounds": 0,
            "seed": args.seed,
            "schedule.patience": 5,
            "schedule.max_minutes_per_round": minutes,
            "eval.valid_users": args.valid_users,
            "eval.batch_size": args.eval_batch_size,
            "device": device,
            "progress": False,
            "output_dir": str(out / "runs" / model),
        }
        settings.update(json.loads(args.overrides).get(model, {}))
        start = time.perf_counter()
        result = siit.train(data, **settings)
        round_ = result.rounds[0]
        results["arms"][model] = dict(
            settings=settings,
            test=result.test,
            valid=round_.valid,
            epochs=round_.epochs,
            best_epoch=round_.best_epoch,
            curve=[{k: c[k] for k in ("epoch", "ndcg@10", "recall@10")} for c in round_.curve],
            seconds=round(time.perf_counter() - start, 1),
        )
        save()
        print(f"{model}: test {result.test} in {time.perf_counter() - start:.0f} s", flush=True)
    for model in args.models:
        run = out / "runs" / model
        excluded = siit.evaluate(
            run, data, device=device, exclude_history=True, batch_size=args.eval_batch_size
        )
        results["arms"][model]["test_exclude_history"] = excluded
        save()
    lines = [
        f"Beauty, LETTER identifiers (4 x 256), seed {args.seed}, {machine}. Test Recall@10 / "
        "NDCG@10; peers from ../shared/data/README.md (same split).",
        "",
        "| model | Recall@10 | NDCG@10 | excl. history | epochs (best) | minutes |",
        "|---|---:|---:|---|---|---:|",
    ]
    for name, peer in {**PEERS, "LETTER-TIGER (published)": LETTER_TIGER}.items():
        lines.append(f"| {name} | {peer['recall@10']:.4f} | {peer['ndcg@10']:.4f} | - | - | - |")
    for model, arm in results["arms"].items():
        ex = arm.get("test_exclude_history")
        ex_text = f"{ex['recall@10']:.4f} / {ex['ndcg@10']:.4f}" if ex else "-"
        lines.append(
            f"| {model} | {arm['test']['recall@10']:.4f} | {arm['test']['ndcg@10']:.4f} | "
            f"{ex_text} | {arm['epochs']} ({arm['best_epoch']}) | {arm['seconds'] / 60:.1f} |"
        )
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
