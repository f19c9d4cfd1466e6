"""SIIT against its own baseline at equal training budget, with the ablations that show why
(issue "SIIT that pays"): test Recall@10 / NDCG@10 over datasets, initial tokenizers and
seeds, for these arms of the decoder-only model (gpt-mini):

- baseline: seqrec alone, `rounds=0`;
- alignment only: the paper's task mix (seqrec, item2id, id2item at weight 1), no refinement;
- siit (paper): the paper's mix and `rounds` refinements by item2id beams (k = 20) with
  collision avoidance, the beams alone competing (`keep_current=False`);
- siit (NAME): SIIT with the levers under test, one arm per entry of `--levers`
  (`{"NAME": {TrainConfig fields}}`), on top of the paper's arm.

Equal budget: every arm trains under one early-stopping rule and one cap on the epochs of
all its rounds together (`--total-epochs`; SIIT's rounds split it evenly, or an arm sets
`max_epochs_first_round` and the refined rounds share the rest). Selection is on
validation only; test is read once per run. Each (dataset, tokenizer) pair is tokenized once
(seed 0), so the comparison is paired. Runs go to benches/runs/ as `siit train`
subprocesses, `--jobs` at a time with one thread each; finished runs are not repeated and
interrupted ones resume from their checkpoint, so a grid can grow over several calls
(`--arms` with no name runs only the `--levers` arms; `--report` tabulates what finished).

    python benches/bench_siit.py --datasets ../shared/data/office --tokenizers rqvae cid \
        --seeds 0 1 2 --jobs 2

Writes benches/results/siit_token.{json,md}.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from harness import (
    RUNS,
    arms_arg,
    grid_args,
    machine_line,
    provenance,
    run_arms,
    settings_arg,
    tokenize,
    write_results,
)

PAPER_TASKS = {"seqrec": 1, "item2id": 1, "id2item": 1}
ARMS = {
    "baseline": {"rounds": 0, "schedule.tasks": {"seqrec": 1}},
    "alignment only": {"rounds": 0, "schedule.tasks": PAPER_TASKS},
    "siit (paper)": {
        "refine": "paper",
        "schedule.tasks": PAPER_TASKS,
        "refine.keep_current": False,
    },
}
SIZES = {"rqvae": (3, 256), "letter": (3, 256), "cid": (3, 32)}


def arms_of(args: argparse.Namespace) -> list[dict]:
    common = dict(model="gpt-mini", threads=1, progress=False, device="cpu", rounds=args.rounds)
    common.update(settings_arg(args.settings))
    variants = [(label, ARMS[label]) for label in args.arms]
    for name, levers in arms_arg(args.levers).items():
        variants.append((f"siit ({name})", {**ARMS["siit (paper)"], **levers}))
    arms = []
    for dataset in args.datasets:
        for tokenizer in args.tokenizers:
            levels, size = SIZES[tokenizer]
            index = tokenize(dataset, tokenizer, levels, size, dry=args.report)
            for seed in args.seeds:
                for label, arm in variants:
                    settings = dict(common, **arm)
                    rounds = settings["rounds"]
                    first = settings.get("schedule.max_epochs_first_round")
                    per_round = args.total_epochs // (rounds + 1)
                    if first is not None and rounds:
                        per_round = (args.total_epochs - first) // rounds
                    slug = re.sub(r"[^0-9A-Za-z]+", "-", label).strip("-")
                    name = f"{Path(dataset).name}-{tokenizer}-{slug}-s{seed}"
                    settings.update(
                        {
                            "dataset": dataset,
                            "tokenizer": str(index),
                            "seed": seed,
                            "schedule.max_epochs_per_round": per_round,
                            "output_dir": str(RUNS / name),
                        }
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
    # seed-major order: an interrupted grid still covers every cell
    arms.sort(key=lambda arm: arm["seed"])
    return arms


def row_of(arm: dict, metrics: dict) -> dict:
    rounds = metrics["rounds"]
    refined = [r for r in rounds if r.get("refine")]
    return dict(
        dataset=arm["dataset"],
        tokenizer=arm["tokenizer"],
        arm=arm["arm"],
        seed=arm["seed"],
        epochs=sum(r["epochs"] for r in rounds),
        minutes=round(sum(r["seconds"] for r in rounds) / 60, 1),
        best_round=metrics["best_round"],
        valid=rounds[metrics["best_round"]]["valid"],
        test=metrics["test"],
        regeneration=[r["refine"].get("regeneration") for r in refined],
        moved=[r["refine"]["changed"] for r in refined],
        split=[
            [r["valid"][k] for k in ("moved_share", "ndcg@10_moved", "ndcg@10_kept")]
            for r in refined
            if "ndcg@10_moved" in r["valid"]
        ],
        consistency=[r.get("consistency") for r in rounds],
    )


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| dataset | initial identifiers | arm | seeds | Recall@10 | NDCG@10 | NDCG@10 vs "
        "baseline | valid NDCG@10 (selection) | epochs | minutes | best round per seed | "
        "item2id top-1/top-20 before each refinement | items moved per refinement | "
        "valid targets moved: share, NDCG@10 moved/kept (seed mean, per refinement) | "
        "consistency prefix 1 (first -> last round) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---|---|---|",
    ]
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["tokenizer"], row["arm"]), []).append(row)
    for (dataset, tokenizer, arm), group in groups.items():

        def stat(key: str, part: str = "test", group=group) -> str:
            values = np.array([g[part][key] for g in group])
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
            return f"{values.mean():.4f}{spread}"

        # paired: against the baseline's runs of the same seeds
        seeds = {g["seed"] for g in group}
        base = [g for g in groups.get((dataset, tokenizer, "baseline"), []) if g["seed"] in seeds]
        gain = "-"
        if len(base) == len(group) and arm != "baseline":
            ref = np.mean([g["test"]["ndcg@10"] for g in base])
            gain = f"{100 * (np.mean([g['test']['ndcg@10'] for g in group]) / ref - 1):+.1f}%"
        regen = "; ".join(
            ", ".join(f"{100 * x['top1']:.0f}%/{100 * x['topk']:.0f}%" for x in g["regeneration"])
            for g in group
            if g["regeneration"]
        )
        moved = "; ".join(",".join(map(str, g["moved"])) for g in group if g["moved"])
        # seeds' mean per refinement: do the users whose target moved lose the most?
        splits = [g["split"] for g in group if g["split"]]
        split = (
            ", ".join(
                f"{100 * share:.0f}% {m:.4f}/{k:.4f}" for share, m, k in np.mean(splits, axis=0)
            )
            if splits and len({len(x) for x in splits}) == 1
            else ""
        )
        consistency = "; ".join(
            f"{g['consistency'][0]['prefix1']:.3f} -> {g['consistency'][-1]['prefix1']:.3f}"
            for g in group
            if g["consistency"] and g["consistency"][0]
        )
        lines.append(
            f"| {dataset} | {tokenizer} | {arm} | {len(group)} | {stat('recall@10')} | "
            f"{stat('ndcg@10')} | {gain} | {stat('ndcg@10', 'valid')} | "
            f"{','.join(str(g['epochs']) for g in group)} | "
            f"{np.mean([g['minutes'] for g in group]):.1f} | "
            f"{','.join(str(g['best_round']) for g in group)} | {regen or '-'} | "
            f"{moved or '-'} | {split or '-'} | {consistency or '-'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    grid_args(parser)
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--total-epochs", type=int, default=60)
    parser.add_argument(
        "--settings",
        default="{}",
        help="JSON TrainConfig fields of every arm (inline or a .json file)",
    )
    parser.add_argument(
        "--levers",
        default="{}",
        help='JSON {"NAME": {TrainConfig fields}}: one SIIT arm each (inline or a .json file, '
        "e.g. benches/configs/siit_arms.toml)",
    )
    parser.add_argument(
        "--report", action="store_true", help="only summarize the runs that finished"
    )
    args = parser.parse_args()
    arms = arms_of(args)
    results = run_arms(arms, args.jobs, args.report)
    rows = [row_of(a, m) for a, m in zip(arms, results, strict=True) if m is not None]
    info = provenance()
    payload = dict(
        provenance=info,
        threads_per_run=1,
        settings=settings_arg(args.settings),
        levers=arms_arg(args.levers),
        total_epochs=args.total_epochs,
        rounds=args.rounds,
        rows=rows,
    )
    lines = table(rows) + ["", f"Measured with: {machine_line(info)}; 1 thread per run."]
    write_results("siit_token", payload, lines)


if __name__ == "__main__":
    main()
