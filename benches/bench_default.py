"""The embedded default, timed: `siit.train()` with no arguments but the seed, each in a fresh
process (`python -c "import siit; siit.train(seed=S)"`), wall time from process start to
exit, on an otherwise idle machine.

    python benches/bench_default.py --seeds 0 1

Writes benches/results/default.{json,md} (seeds, minutes, best round, epochs, validation
and test metrics, with most popular and SASRec on the same split for reference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RUNS = HERE / "runs" / "default"
OUT = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    rows = []
    RUNS.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
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
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    OUT.mkdir(exist_ok=True)
    (OUT / "default.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=1))
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
    (OUT / "default.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
