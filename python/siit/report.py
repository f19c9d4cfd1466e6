"""The PNG report of a run: the validation curve of every round, identifier churn per
refinement, code usage and entropy per level, and the refinement diagnostics."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(metrics_path: str | Path, out: str | Path) -> Path:
    """Draw `metrics.json` into a four-panel PNG at `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = json.loads(Path(metrics_path).read_text())
    rounds = metrics["rounds"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))

    ax = axes[0]
    offset = 0  # epochs of the rounds before: the curves run on one axis of epochs
    for r in rounds:
        curve = r.get("curve") or []
        if curve:
            xs = [offset + c["epoch"] for c in curve]
            line = ax.plot(
                xs, [c["ndcg@10"] for c in curve], marker=".", label=f"round {r['round']}"
            )
            ax.scatter(
                [offset + r["best_epoch"]], [r["valid"]["ndcg@10"]], color=line[0].get_color(), s=60
            )
        offset += r.get("epochs", 0)
        if r is not rounds[-1]:
            ax.axvline(offset + 0.5, color="grey", linewidth=0.5)
    best, test = metrics.get("best_round"), metrics.get("test")
    if test and best is not None and best >= 0:
        before = sum(r.get("epochs", 0) for r in rounds[:best])
        ax.scatter(
            [before + rounds[best].get("best_epoch", 0)],
            [test["ndcg@10"]],
            marker="*",
            s=160,
            color="black",
            zorder=3,
            label="test (best round)",
        )
    ax.set(title="validation NDCG@10 per epoch (dots: each round's best)", xlabel="epoch")
    ax.legend(fontsize=8)

    ax = axes[1]
    refined = [r for r in rounds if r.get("refine")]
    if refined:
        rx = [r["round"] for r in refined]
        width = 0.25
        for shift, key in ((-width, "changed"), (0.0, "rank0"), (width, "fallback")):
            ax.bar([x + shift for x in rx], [r["refine"][key] for r in refined], width, label=key)
        ax.legend(fontsize=8)
        ax.set_xticks(rx)
    else:
        ax.text(0.5, 0.5, "no refinement rounds", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="identifier churn per refinement", xlabel="round", ylabel="items")

    ax = axes[2]
    if refined:
        levels = len(refined[0]["refine"]["codes_used"])
        for level in range(levels):
            ax.plot(
                [r["round"] for r in refined],
                [r["refine"]["codes_used"][level] for r in refined],
                marker="o",
                label=f"level {level} codes used",
            )
        twin = ax.twinx()
        for level in range(levels):
            twin.plot(
                [r["round"] for r in refined],
                [r["refine"]["entropy_bits"][level] for r in refined],
                linestyle="--",
                alpha=0.6,
            )
        twin.set_ylabel("entropy (bits, dashed)")
        ax.set_xticks([r["round"] for r in refined])
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no refinement rounds", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="code usage per level", xlabel="round", ylabel="distinct codes")

    ax = axes[3]
    regen = [(r["round"], r["refine"].get("regeneration")) for r in refined]
    regen = [(x, g) for x, g in regen if g]
    for key in ("top1", "topk"):
        if regen:
            ax.plot([x for x, _ in regen], [g[key] for _, g in regen], marker="o", label=key)
    consistent = [(r["round"], r.get("consistency")) for r in rounds if r.get("consistency")]
    for key in ("prefix1", "prefix2", "all"):
        if consistent:
            ax.plot(
                [x for x, _ in consistent],
                [c[key] for _, c in consistent],
                linestyle="--",
                marker=".",
                label=f"text cosine, {key}",
            )
    split = [(r["round"], r["valid"]) for r in refined if "ndcg@10_moved" in r["valid"]]
    if split:
        twin = ax.twinx()
        for key, style in (("ndcg@10_moved", "v"), ("ndcg@10_kept", "^")):
            twin.plot([x for x, _ in split], [v[key] for _, v in split], style, color="black")
        twin.set_ylabel("valid NDCG@10 of moved (v) / kept (^) targets")
    if regen or consistent:
        ax.legend(fontsize=7)
        ax.set_xticks([r["round"] for r in rounds])
    else:
        ax.text(0.5, 0.5, "no diagnostics", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="item2id regeneration, consistency", xlabel="round", ylabel="share / cosine")

    name = metrics.get("dataset", {}).get("name", "")
    fig.suptitle(f"siit run: {name}, best round {best}")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
