"""The embedded default, timed: `siit.train()` with no arguments but the seed, each in a fresh
process (`python -c "import siit; siit.train(seed=S)"`), wall time from process start to
exit, on an otherwise idle machine.

    python benches/bench_default.py --seeds 0 1

Then times full-ranking evaluation (users per second) and one refinement pass over every
item (items per second) with the first seed's model, on 1 and 2 CPU threads.

Writes benches/results/default.{json,md} (seeds, minutes, best round, epochs, validation
and test metrics, throughput).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from harness import machine_line, provenance

HERE = Path(__file__).parent
RUNS = HERE / "runs" / "default"
OUT = HERE / "results"


def throughput(run: Path) -> list[dict]:
    """Users/s of a full-ranking validation pass and items/s of a refinement pass with a
    run's best model (item-level: occurrence evidence over the training windows; token-level:
    item2id beams), each + assign_unique. The default trains without rounds, so refinement
    here measures speed only."""
    import siit
    import torch
    from siit.refine import refine
    from siit.runs import load_run
    from siit.tasks import TaskBuilder

    cfg, rec, identifiers = load_run(run)
    data = siit.Dataset.movielens(max_history=cfg.data.max_history)
    tasks = TaskBuilder(
        rec, data, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        siit.evaluate(run, data, split="valid", progress=False)
        users = data.n_users / (time.perf_counter() - start)
        start = time.perf_counter()
        # the refinement a run with rounds would take (the default preset's levers)
        refine(rec, tasks, identifiers, data, cfg.replace(rounds=1).check())
        items = data.n_items / (time.perf_counter() - start)
        out.append(dict(threads=threads, users_per_s=users, items_per_s=items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="keep the recorded runs of default.json, measure the throughput again",
    )
    parser.add_argument("--note", default="", help="a line under the table (e.g. what else ran)")
    args = parser.parse_args()
    rows = json.loads((OUT / "default.json").read_text())["rows"] if args.speed_only else []
    RUNS.mkdir(parents=True, exist_ok=True)
    for seed in [] if args.speed_only else args.seeds:
        out = RUNS / f"seed-{seed}"
        code = f"import siit; siit.train(seed={seed}, output_dir={str(out)!r}, progress=False)"
        start = time.perf_counter()
        with (RUNS / f"seed-{seed}.log").open("w") as log:
            cmd = [sys.executable, "-c", code]
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        minutes = (time.perf_counter() - start) / 60
        metrics = json.loads((out / "metrics.json").read_text())
        rounds = metrics["rounds"]
        rows.append(
            dict(
                seed=seed,
                minutes=round(minutes, 2),
                best_round=metrics["best_round"],
                epochs=[r["epochs"] for r in rounds],
                valid=rounds[metrics["best_round"]]["valid"],
                test=metrics["test"],
                config=metrics["config"],
            )
        )
        print(f"seed {seed}: {minutes:.1f} min, test {metrics['test']['ndcg@10']:.4f}", flush=True)
    speed = throughput(RUNS / f"seed-{rows[0]['seed']}")
    info = provenance()
    machine = machine_line(info)
    OUT.mkdir(exist_ok=True)
    payload = dict(provenance=info, rows=rows, throughput=speed)
    (OUT / "default.json").write_text(json.dumps(payload, indent=1))
    lines = [
        f"`siit.train()` defaults on MovieLens-100K, {machine}, one process at a time.",
        "",
        "| seed | minutes (wall, process start to exit) | best round | epochs per round "
        "| valid NDCG@10 | test Recall@10 | test NDCG@10 |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['minutes']:.1f} | {r['best_round']} | {r['epochs']} | "
            f"{r['valid']['ndcg@10']:.4f} | {r['test']['recall@10']:.4f} | "
            f"{r['test']['ndcg@10']:.4f} |"
        )
    if args.note:
        lines += ["", args.note]
    lines += [
        "",
        f"| CPU threads | validation users / s ({rows[0]['config']['model']}, eval_mode "
        f"{rows[0]['config']['eval']['mode']}) | refinement items / s |",
        "|---:|---:|---:|",
    ]
    for t in speed:
        lines.append(f"| {t['threads']} | {t['users_per_s']:.0f} | {t['items_per_s']:.0f} |")
    (OUT / "default.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
