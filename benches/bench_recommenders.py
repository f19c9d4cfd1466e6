"""Recommenders side by side on one leave-one-out split: most popular, SASRec over item ids
(`peers.py`), the generative models (`rounds=0`) on RQ-VAE and CID identifiers: token-level
decoder-only (gpt-mini), item-level (item-mini) and encoder-decoder (t5-mini) at the budget a
CPU affords.

Every arm trains until validation NDCG@10 stops improving and reads test once. Test
Recall@10 / NDCG@10 are reported as the literature does (history items may be
recommended) and with the user's history excluded. Identifiers are fitted once per
(dataset, tokenizer) with seed 0 and shared by the seeds, so seeds vary the model only.
Arms run as subprocesses, `--jobs` at a time with one thread each; finished arms are not
repeated, so the script resumes, and rows already in recommenders.json are kept unless their
arm runs again (`--models item-mini` adds item-level rows beside the recorded ones;
`item-mini+trie` is item-mini with `trie_softmax`, `item-mini+text` with text input,
`item-mini+text+trie` with both, `+w128` at width 128, `+dense` with a dense head (`+res`:
and its per-item residual),
`item-mini+trie+150ep` the trie
rows at a 150-epoch cap; plain `item-mini` rows are text-free). A tokenizer is `rqvae` or
`cid` at the bench's shape (3 x 256, 3 x 32) or names its own: `rqvae-4x256`.

    python benches/bench_recommenders.py --datasets movielens ../shared/data/office \
        ../shared/data/scientific --seeds 0 1 2 --jobs 2 --models gpt-mini item-mini

Writes benches/results/recommenders.{json,md}.
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
from harness import (
    OUT,
    RUNS,
    finished,
    grid_args,
    identifier_shape,
    provenance,
    run,
    settings_arg,
    tokenize,
    write_results,
)

SIZES = {"rqvae": (3, 256), "cid": (3, 32)}
# Arms that are a preset with options, by the name their rows carry.
# item-mini reads item text by default ("auto"), has a dense head and trains two cycles of
# up to 150 epochs; its rows ran one cycle of 100 without the head (unless `+dense`), plain
# item-mini text-free, and stay so, so that a resumed grid stays like for like.
ITEM_ROWS = {"model": "item-mini", "schedule.max_epochs_per_round": 100, "schedule.cycles": 1}
VARIANTS = {
    "item-mini": {**ITEM_ROWS, "network.options": {"text_input": False}},
    "item-mini+text": {**ITEM_ROWS, "network.options": {"text_input": True}},
    "item-mini+trie": {**ITEM_ROWS, "network.options": {"trie_softmax": True, "text_input": False}},
    "item-mini+text+trie": {
        **ITEM_ROWS,
        "network.options": {"trie_softmax": True, "text_input": True},
    },
    # Text and trie at width 128 (SASRec's shape is 64).
    "item-mini+text+trie+w128": {
        **ITEM_ROWS,
        "network.options": {
            "trie_softmax": True,
            "text_input": True,
            "hidden": 128,
            "inner": 512,
            "head_inner": 512,
        },
    },
    # A dense head beside the code-by-code one (LIGER's / SASRec's item softmax).
    "item-mini+text+dense": {
        **ITEM_ROWS,
        "network.options": {"text_input": True, "dense_head": True},
    },
    "item-mini+text+trie+dense": {
        **ITEM_ROWS,
        "network.options": {"trie_softmax": True, "text_input": True, "dense_head": True},
    },
    # ... with a free per-item residual on the dense head's output vectors.
    "item-mini+text+trie+dense+res": {
        **ITEM_ROWS,
        "network.options": {
            "trie_softmax": True,
            "text_input": True,
            "dense_head": True,
            "dense_residual": True,
        },
    },
    # The trie rows at the item-level baseline's 150-epoch cap, one cycle.
    "item-mini+trie+150ep": {
        **ITEM_ROWS,
        "schedule.max_epochs_per_round": 150,
        "network.options": {"trie_softmax": True, "text_input": False},
    },
}
for _arm in VARIANTS.values():  # the arms without `+dense` ran without the head
    _arm["network.options"].setdefault("dense_head", False)
GENERATIVE = {
    "item-mini": "item-level",
    "item-mini+text": "item-level, text input",
    "item-mini+trie": "item-level, trie softmax",
    "item-mini+text+trie": "item-level, text input, trie softmax",
    "item-mini+text+trie+w128": "item-level, text input, trie softmax, width 128",
    "item-mini+trie+150ep": "item-level, trie softmax, 150 epochs",
    "item-mini+text+dense": "item-level, text input, dense head",
    "item-mini+text+trie+dense": "item-level, text input, trie softmax, dense head",
    "item-mini+text+trie+dense+res": "item-level, text input, trie softmax, dense head "
    "with residual",
    "gpt-mini": "decoder-only",
    "t5-mini": "encoder-decoder",
}


def load(dataset: str):
    import siit

    return siit.Dataset.load("ml-100k" if dataset == "movielens" else dataset, max_history=50)


def peer(arm: dict) -> dict:
    """Run a peer (popularity or SASRec) in a subprocess; its result file makes it resumable."""
    out = Path(arm["output_dir"])
    result = out / "result.json"
    if not result.exists():
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--peer", json.dumps(arm)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with (out / "log.txt").open("w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return json.loads(result.read_text())


def run_peer(arm: dict) -> None:
    import peers
    import torch

    torch.set_num_threads(1)
    data = load(arm["dataset_path"])
    start = time.perf_counter()
    if arm["model"] == "most popular":
        out = {
            "test": peers.popularity(data),
            "test_exclude_history": peers.popularity(data, exclude_history=True),
            "epochs": 0,
        }
    else:
        out = peers.sasrec(data, seed=arm["seed"], log=lambda line: print(line, flush=True))
    out["seconds"] = round(time.perf_counter() - start, 1)
    Path(arm["output_dir"], "result.json").write_text(json.dumps(out, indent=1))


def generative(arm: dict) -> dict:
    """Train (resumable), then test the best model with history excluded too."""
    metrics = run(arm)
    out = Path(arm["output_dir"])
    excluded = out / "test-exclude-history.json"
    if not excluded.exists():
        cmd = [sys.executable, "-m", "siit", "evaluate", str(out), "exclude_history=true", "--json"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        excluded.write_text(done.stdout)
    rounds = metrics["rounds"]
    curve = [c for r in rounds for c in r["curve"]]
    users = metrics["dataset"]["valid_users"]
    return {
        "valid": rounds[metrics["best_round"]]["valid"],
        "valid_users_per_second": round(
            users * len(curve) / max(sum(c["eval_seconds"] for c in curve), 1e-9), 1
        ),
        "test": metrics["test"],
        "test_exclude_history": json.loads(excluded.read_text()),
        "epochs": sum(r["epochs"] for r in rounds),
        "best_epoch": rounds[metrics["best_round"]]["best_epoch"],
        "seconds": round(sum(r["seconds"] for r in rounds), 1),
    }


def arms_of(args: argparse.Namespace) -> list[dict]:
    arms = []
    for dataset in args.datasets:
        name = Path(dataset).name
        base = dict(dataset=name, dataset_path=dataset)
        arms.append(
            dict(
                base,
                model="most popular",
                tokenizer="-",
                seed=0,
                output_dir=str(RUNS / f"{name}-popular"),
            )
        )
        for seed in args.seeds:
            arms.append(
                dict(
                    base,
                    model="SASRec",
                    tokenizer="-",
                    seed=seed,
                    output_dir=str(RUNS / f"{name}-sasrec-s{seed}"),
                )
            )
        seq2seq = name in args.seq2seq_datasets
        for model, tokenizers, seeds in (
            *((m, args.tokenizers, args.seeds) for m in args.models),
            ("t5-mini", args.seq2seq_tokenizers if seq2seq else [], args.seq2seq_seeds),
        ):
            for tokenizer in tokenizers:
                method, levels, size = identifier_shape(tokenizer, SIZES)
                index = tokenize(dataset, method, levels, size, dry=args.report)
                for seed in seeds:
                    out = RUNS / f"{name}-{model}-{tokenizer}-s{seed}"
                    settings = {
                        **settings_arg(args.settings),
                        "dataset": dataset,
                        "tokenizer": str(index),
                        **VARIANTS.get(model, {"model": model}),
                        "rounds": 0,
                        "seed": seed,
                        "threads": 1,
                        "progress": False,
                        "device": "cpu",
                        "output_dir": str(out),
                    }
                    if model == "t5-mini":
                        settings["schedule.max_epochs_per_round"] = args.seq2seq_epochs
                        settings["eval.every"] = 2
                    arms.append(
                        dict(
                            base,
                            model=model,
                            tokenizer=tokenizer,
                            seed=seed,
                            output_dir=str(out),
                            settings=settings,
                        )
                    )
    return arms


def done(arm: dict) -> bool:
    """Whether the arm's run finished (generative) or its result file exists (peers)."""
    if "settings" in arm:
        return finished(arm) is not None
    return Path(arm["output_dir"], "result.json").exists()


def result_of(arm: dict, report: bool) -> dict | None:
    if report and not done(arm):
        return None
    return generative(arm) if "settings" in arm else peer(arm)


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| dataset | model | identifiers | seeds | Recall@10 | NDCG@10 | Recall@10 excl. history "
        "| NDCG@10 excl. history | of SASRec's NDCG@10 | valid NDCG@10 | epochs (best) "
        "| minutes per run | validation users/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"], row["tokenizer"]), []).append(row)
    sasrec = {
        d: np.mean([g["test"]["ndcg@10"] for g in group])
        for (d, m, _), group in groups.items()
        if m == "SASRec"
    }
    for (dataset, model, tokenizer), group in groups.items():

        def stat(split: str, key: str, group=group) -> str:
            values = np.array([g[split][key] for g in group])
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            return f"{values.mean():.4f} ± {spread:.4f}" if len(values) > 1 else f"{values[0]:.4f}"

        epochs = ",".join(f"{g.get('epochs', 0)} ({g.get('best_epoch', '-')})" for g in group)
        minutes = np.mean([g["seconds"] for g in group]) / 60
        label = GENERATIVE.get(model, model) + (f" ({model})" if model in GENERATIVE else "")
        speed = [g["valid_users_per_second"] for g in group if "valid_users_per_second" in g]
        speed_cell = f"{np.mean(speed):.0f}" if speed else "-"
        share = np.mean([g["test"]["ndcg@10"] for g in group]) / sasrec.get(dataset, np.nan)
        valid = [g["valid"]["ndcg@10"] for g in group if "valid" in g]
        valid_cell = f"{np.mean(valid):.4f}" if valid else "-"
        lines.append(
            f"| {dataset} | {label} | {tokenizer} | {len(group)} | {stat('test', 'recall@10')} | "
            f"{stat('test', 'ndcg@10')} | {stat('test_exclude_history', 'recall@10')} | "
            f"{stat('test_exclude_history', 'ndcg@10')} | {share:.0%} | {valid_cell} | {epochs} | "
            f"{minutes:.1f} | {speed_cell} |"
        )
    return lines


def key(row: dict) -> tuple:
    return row["dataset"], row["model"], row["tokenizer"], row["seed"]


def kept_rows(new: list[dict]) -> list[dict]:
    """Rows of recommenders.json whose arm did not run this time (recorded figures stay)."""
    path = OUT / "recommenders.json"
    if not path.exists():
        return []
    ran = {key(r) for r in new}
    return [r for r in json.loads(path.read_text())["rows"] if key(r) not in ran]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    grid_args(parser)
    parser.add_argument(
        "--models",
        nargs="*",
        default=["gpt-mini"],
        choices=["gpt-mini", *sorted(GENERATIVE.keys() - {"gpt-mini", "t5-mini"})],
    )
    parser.add_argument("--seq2seq-datasets", nargs="*", default=["office"])
    parser.add_argument("--seq2seq-tokenizers", nargs="*", default=["cid"])
    parser.add_argument("--seq2seq-seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--seq2seq-epochs", type=int, default=10)
    parser.add_argument("--settings", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument("--report", action="store_true", help="only summarize finished arms")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(json.loads(args.peer))
        return
    recorded = {key(r): r for r in kept_rows([])}
    # an arm recorded in recommenders.json whose run is not here is not run again
    arms = [a for a in arms_of(args) if key(a) not in recorded or Path(a["output_dir"]).exists()]
    # cheap arms first, then seed-major: an interrupted grid still covers every cell
    arms.sort(key=lambda a: (a["model"] == "t5-mini", a["seed"]))
    # an arm that had finished before this call keeps the provenance recorded with it
    done_before = {key(a) for a in arms if done(a)}
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda a: result_of(a, args.report), arms))
    now = provenance()

    def provenance_of(arm: dict) -> dict:
        kept = recorded.get(key(arm), {}).get("provenance")
        return kept if kept and key(arm) in done_before else now

    rows = [
        dict(
            dataset=a["dataset"],
            model=a["model"],
            tokenizer=a["tokenizer"],
            seed=a["seed"],
            **r,
            **({"settings": a["settings"]} if "settings" in a else {}),
            provenance=provenance_of(a),
        )
        for a, r in zip(arms, results, strict=True)
        if r is not None
    ]
    rows = kept_rows(rows) + rows
    rows.sort(
        key=lambda r: (
            r["dataset"],
            list(GENERATIVE).index(r["model"]) + 2
            if r["model"] in GENERATIVE
            else r["model"] != "most popular",
            r["tokenizer"],
            r["seed"],
        )
    )
    payload = dict(threads_per_run=1, settings=settings_arg(args.settings), rows=rows)
    write_results("recommenders", payload, table(rows))


if __name__ == "__main__":
    main()
