"""SIIT on the item-level model (item-mini): every SIIT arm beside its no-move control, so
that its gain is the arm minus a run with the same rounds, restarts and schedule in which
nobody moves (`refine.levels=0`), and beside the baseline (`rounds=0`, the same epoch
budget). Each refined round's paired diagnostics (the same validation targets scored before
and after the move: moved, kept, cold-start) come from the runs' metrics.json.

    python benches/bench_siit_item.py --datasets movielens ../shared/data/office \
        --tokenizers cid --seeds 0 1 --levers benches/configs/siit_item_pilot.toml

`--levers` is a TOML file with a table of TrainConfig settings per arm (or the same as
JSON), on top of `refine="conservative"` with one refinement (`--rounds`); `--settings`
apply to every run, the baseline's too, and name the runs; rounds share `--total-epochs`
as the arm says (e.g. `schedule.max_epochs_first_round`). Runs go to benches/runs/ as
resumable `siit train` subprocesses, `--jobs` at a time with one thread each. Writes
benches/results/NAME.{json,md} (`--name`, default siit_item); `--merge` keeps the cells of
NAME.json that this call does not run, so that a grid can be finished on another machine.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from harness import (
    OUT,
    RUNS,
    arms_arg,
    grid_args,
    machine_line,
    markdown_table,
    provenance,
    run_arms,
    settings_arg,
    tokenize,
    write_results,
)

SIZES = {"rqvae": (3, 256), "letter": (3, 256), "cid": (3, 32)}


FIRST, PER_ROUND = "schedule.max_epochs_first_round", "schedule.max_epochs_per_round"
AFTER = "after_baseline"  # an arm's key, not a setting: it extends the baseline's run


def variants(args: argparse.Namespace) -> list[tuple[str, dict, str | None]]:
    """(label, settings, label of its control) of the baseline, of every lever arm and of
    one no-move control per schedule: with nobody moving, the levers change nothing else.
    An arm with `after_baseline = true` extends its cell's finished baseline run with the
    rounds (its own `schedule.max_epochs_per_round` epochs each) instead of training its
    round 0 again; its control extends the baseline too, so that it is the baseline given
    one more cycle per round, and the better of the two on validation is its best round."""
    # one cycle, as the recorded grids (item-level baselines train two by default)
    baseline = {"rounds": 0, PER_ROUND: args.total_epochs, "schedule.cycles": 1}
    out: list[tuple[str, dict, str | None]] = [("baseline", baseline, None)]
    controls: dict[str, dict] = {}
    for name, levers in arms_arg(args.levers).items():
        arm = {"refine": "conservative", "rounds": args.rounds, **levers}
        first, rounds = arm.get(FIRST), arm["rounds"]
        if arm.get(AFTER):
            first = args.total_epochs
        elif PER_ROUND not in arm:  # else the arm's own cap (the paper's 20 epochs a round)
            # the rounds share the budget, after a first round that sets its own length
            arm[PER_ROUND] = (
                args.total_epochs // (rounds + 1)
                if first is None
                else (args.total_epochs - first) // rounds
            )
        epochs = [first or arm[PER_ROUND]] + [arm[PER_ROUND]] * rounds
        control = f"no-move control, {'+'.join(map(str, epochs))} epochs"
        # the arm's settings but its refinement levers, with nobody moving
        kept = {k: v for k, v in arm.items() if not k.startswith("refine")}
        extras = {k: v for k, v in kept.items() if k not in ("rounds", FIRST, PER_ROUND, AFTER)}
        if extras:
            control += ", " + ", ".join(f"{k}={json.dumps(v)}" for k, v in extras.items())
        controls[control] = {"refine": "conservative", "refine.levels": 0, **kept}
        out.append((name, arm, control))
    out += [(label, settings, None) for label, settings in controls.items()]
    return out


def _slug(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", label).strip("-")


def arms_of(args: argparse.Namespace) -> list[dict]:
    common = dict(model=args.model, threads=1, progress=False, device="cpu")
    common.update(settings_arg(args.settings))
    # --settings name the runs too, so that a variant never reuses another grid's runs
    given = sorted(settings_arg(args.settings).items())
    variant = "".join(f"-{name}-{json.dumps(value)}" for name, value in given)
    arms = []
    for dataset in args.datasets:
        for tokenizer in args.tokenizers:
            index = tokenize(dataset, tokenizer, *SIZES[tokenizer], dry=args.report)
            for seed in args.seeds:
                cell = f"{Path(dataset).name}-{tokenizer}-{args.model}"
                for label, arm, control in variants(args):
                    out = RUNS / f"{cell}-{_slug(label + variant)}-s{seed}"
                    settings = {
                        **common,
                        **arm,
                        "dataset": dataset,
                        "tokenizer": str(index),
                        "seed": seed,
                        "output_dir": str(out),
                    }
                    # item-mini reads item text and has a dense head by default; the grids
                    # ran text-free without the head and stay so unless --settings or the
                    # arm turns them on
                    options = {
                        "text_input": False,
                        "dense_head": False,
                        **common.get("network.options", {}),
                    }
                    settings["network.options"] = {**options, **arm.get("network.options", {})}
                    after = settings.pop(AFTER, False)
                    arms.append(
                        dict(
                            extends=str(RUNS / f"{cell}-{_slug('baseline' + variant)}-s{seed}")
                            if after
                            else None,
                            dataset=Path(dataset).name,
                            tokenizer=tokenizer,
                            arm=label,
                            control=control,
                            seed=seed,
                            output_dir=str(out),
                            settings=settings,
                        )
                    )
    arms.sort(key=lambda arm: arm["seed"])  # an interrupted grid still covers every cell
    return arms


def row_of(arm: dict, metrics: dict) -> dict:
    rounds = metrics["rounds"]
    return dict(
        dataset=arm["dataset"],
        tokenizer=arm["tokenizer"],
        arm=arm["arm"],
        control=arm["control"],
        seed=arm["seed"],
        test=metrics["test"],
        valid=rounds[metrics["best_round"]]["valid"],
        best_round=metrics["best_round"],
        epochs=sum(r["epochs"] for r in rounds),
        minutes=round(sum(r["seconds"] for r in rounds) / 60, 1),
        moved=[r["refine"]["changed"] for r in rounds if r.get("refine")],
        paired=[r["paired"] for r in rounds if r.get("paired")],
        cold=[r.get("cold") for r in rounds],
    )


def _mean_sd(values: list[float]) -> str:
    spread = f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else ""
    return f"{np.mean(values):.4f}{spread}"


def _gain(group: list[dict], reference: list[dict]) -> str:
    """Test NDCG@10 of `group` against `reference` over the seeds both have."""
    ref = {g["seed"]: g["test"]["ndcg@10"] for g in reference}
    pairs = [(g["test"]["ndcg@10"], ref[g["seed"]]) for g in group if g["seed"] in ref]
    if not pairs:
        return "-"
    mine, theirs = np.mean(pairs, axis=0)
    seeds = "" if len(pairs) == len(group) else f" ({len(pairs)} seeds)"
    return f"{100 * (mine / theirs - 1):+.1f}%{seeds}"


def _best_reference(base: list[dict], control: list[dict]) -> list[dict]:
    """Per seed, the baseline or the no-move control, whichever validated better: the
    baseline that gets the better of one and two cycles, chosen as a user would."""
    mine = {g["seed"]: g for g in control}
    return [
        max((b, mine[b["seed"]]), key=lambda g: g["valid"]["ndcg@10"])
        for b in base
        if b["seed"] in mine
    ]


def _paired(group: list[dict], part: str) -> str:
    """Seed means of the first refinement's paired NDCG@10 before -> after, and targets."""
    cells = [g["paired"][0][part] for g in group if g["paired"]]
    if not cells:
        return "-"
    n = np.mean([c["n"] for c in cells])
    before = np.mean([c["ndcg@10_before"] for c in cells])
    after = np.mean([c["ndcg@10_after"] for c in cells])
    return f"{before:.4f} -> {after:.4f} ({n:.0f})"


def table(rows: list[dict]) -> list[str]:
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["tokenizer"], row["arm"]), []).append(row)
    header = [
        "dataset",
        "identifiers",
        "arm",
        "seeds",
        "test NDCG@10",
        "test Recall@10",
        "vs its control",
        "vs baseline",
        "vs the better of baseline and control (valid)",
        "valid NDCG@10 (selection)",
        "best round per seed",
        "items moved",
        "moved targets: NDCG@10 before -> after (n)",
        "kept targets",
        "cold-start targets",
        "epochs",
        "minutes",
    ]
    lines = []
    for (dataset, tokenizer, arm), group in groups.items():
        control = groups.get((dataset, tokenizer, group[0]["control"]), [])
        base = groups.get((dataset, tokenizer, "baseline"), [])
        lines.append(
            [
                dataset,
                tokenizer,
                arm,
                len(group),
                _mean_sd([g["test"]["ndcg@10"] for g in group]),
                f"{np.mean([g['test']['recall@10'] for g in group]):.4f}",
                _gain(group, control) if control else "-",
                _gain(group, base) if arm != "baseline" else "-",
                _gain(group, _best_reference(base, control)) if control and base else "-",
                _mean_sd([g["valid"]["ndcg@10"] for g in group]),
                ",".join(str(g["best_round"]) for g in group),
                "; ".join(",".join(map(str, g["moved"])) for g in group if g["moved"]) or "-",
                _paired(group, "moved"),
                _paired(group, "kept"),
                _paired(group, "cold"),
                f"{np.mean([g['epochs'] for g in group]):.0f}",
                f"{np.mean([g['minutes'] for g in group]):.1f}",
            ]
        )
    return markdown_table(header, lines, right={3, 4, 5, 6, 7, 8, 9, 15, 16})


def page(payload: dict) -> list[str]:
    """The results page of a grid's payload."""
    return [
        f"SIIT on {payload['model']}: each arm beside its no-move control (same rounds and "
        "schedule, `refine.levels=0`) and the baseline (`rounds=0`), "
        f"{payload['total_epochs']} epochs in all (an arm after the baseline extends the "
        "baseline's finished run: its rounds come on top), test read once per run; paired "
        "columns: the first refinement's validation targets scored by the round before and "
        "the round after it (seed means); epochs: trained, all rounds, seed mean. Gains "
        "compare test NDCG@10 over the seeds both runs have; 'the better of baseline and "
        "control' is, per seed, whichever of the two validated better (the baseline with the "
        "better of one and two cycles, chosen as a user would).",
        "",
        *table(payload["rows"]),
        "",
        f"Measured with: {machine_line(payload['provenance'])}; 1 thread per run, two or more "
        "runs sharing the cores (minutes are upper bounds).",
        *(
            f"{', '.join(' '.join(cell) for cell in info['cells'])}: measured earlier, with "
            f"{machine_line(info)}."
            for info in payload.get("earlier_provenance", [])
        ),
    ]


def _by_cell(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by cell (dataset, identifiers), in order of first appearance."""
    out: dict[tuple, list[dict]] = {}
    for row in rows:
        out.setdefault((row["dataset"], row["tokenizer"]), []).append(row)
    return out


def merged(path: Path, payload: dict) -> dict:
    """`payload` with the rows of the grid recorded at `path` whose cell (dataset,
    identifiers) it does not hold, when both ran the same grid: the rows of a cell all come
    from one call, so that its arms compare with its own baselines."""
    if not path.exists():
        return payload
    recorded = json.loads(path.read_text())
    for key in ("model", "rounds", "total_epochs", "settings", "levers"):
        if recorded.get(key) != payload[key]:
            raise SystemExit(
                f"--merge: {path} records another grid ({key} {recorded.get(key)!r}, this "
                f"call {payload[key]!r}); give another --name"
            )
    by_cell, fresh = _by_cell(recorded["rows"]), _by_cell(payload["rows"])
    # each earlier measurement names the cells it still holds; the recorded call the rest
    earlier = [
        {**info, "cells": [c for c in info["cells"] if tuple(c) not in fresh]}
        for info in recorded.get("earlier_provenance", [])
    ]
    claimed = {tuple(c) for info in earlier for c in info["cells"]}
    last = [list(c) for c in by_cell if c not in fresh and c not in claimed]
    earlier = [e for e in [*earlier, {**recorded["provenance"], "cells": last}] if e["cells"]]
    by_cell.update(fresh)  # a cell run again keeps its place in the table
    rows = [row for group in by_cell.values() for row in group]
    return {**payload, "rows": rows, "earlier_provenance": earlier}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    grid_args(parser)
    parser.add_argument("--model", default="item-mini")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--total-epochs", type=int, default=100)
    parser.add_argument("--settings", default="{}", help="JSON TrainConfig fields of every arm")
    parser.add_argument(
        "--levers", default="{}", help="arms: a .toml file of one table per arm, or JSON"
    )
    parser.add_argument("--report", action="store_true", help="only summarize finished runs")
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite results/NAME.md from its recorded NAME.json (runs need not exist)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the cells of results/NAME.json this call does not run (the runs of a grid "
        "finished on another machine are gone; its recorded rows are not)",
    )
    parser.add_argument("--name", default="siit_item", help="results/NAME.{json,md}")
    args = parser.parse_args()
    if args.render:
        payload = json.loads((OUT / f"{args.name}.json").read_text())
        write_results(args.name, payload, page(payload))
        return
    arms = arms_of(args)
    # the baselines first (arms with after_baseline extend them); then every arm, finished
    # baselines read back
    run_arms([a for a in arms if a["arm"] == "baseline"], args.jobs, args.report)
    results = run_arms(arms, args.jobs, args.report)
    payload = dict(
        provenance=provenance(),
        threads_per_run=1,
        model=args.model,
        rounds=args.rounds,
        total_epochs=args.total_epochs,
        settings=settings_arg(args.settings),
        levers=arms_arg(args.levers),
        rows=[row_of(a, m) for a, m in zip(arms, results, strict=True) if m is not None],
    )
    if args.merge:
        payload = merged(OUT / f"{args.name}.json", payload)
    write_results(args.name, payload, page(payload))


if __name__ == "__main__":
    main()
