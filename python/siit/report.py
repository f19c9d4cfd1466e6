"""The PNG report of a run: the validation curve of every round with the training loss and
the most-popular baseline, code usage and entropy per level, identifier churn per refinement,
and the refinement diagnostics. Only the panels with data are drawn (`panels`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Every panel, in the order drawn; `panels(metrics)` says which of them a run's metrics fill.
PANELS = ("validation", "usage", "churn", "diagnostics")
PANEL_WIDTH = 5.6  # inches per panel
PANEL_HEIGHT = 4.6
DPI = 110
LOSS_STYLES = {"seqrec": "-", "item2id": "--", "id2item": ":"}


def panels(metrics: dict[str, Any]) -> list[str]:
    """Which panels `write_report` draws for `metrics`, in order: "validation" always (it says
    so when there is nothing yet), "usage" when some round's code usage is known, "churn" when
    some round was refined, "diagnostics" when there is regeneration, consistency or
    moved/kept data."""
    rounds = metrics.get("rounds") or []
    out = ["validation"]
    if any(_usage(r) for r in rounds):
        out.append("usage")
    if any(r.get("refine") for r in rounds):
        out.append("churn")
    if any(_diagnostics(rounds)):
        out.append("diagnostics")
    return out


def figure_size(n_panels: int) -> tuple[float, float]:
    """The figure's size in inches for `n_panels` panels side by side."""
    return (PANEL_WIDTH * max(n_panels, 1), PANEL_HEIGHT)


def draw(metrics: dict[str, Any]):
    """The report's matplotlib figure for `metrics` (as read from metrics.json): one panel
    per entry of `panels(metrics)`, `figure_size` inches. The caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = panels(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=figure_size(len(names)), squeeze=False)
    drawers = {
        "validation": _draw_validation,
        "usage": _draw_usage,
        "churn": _draw_churn,
        "diagnostics": _draw_diagnostics,
    }
    for name, ax in zip(names, axes[0], strict=True):
        drawers[name](ax, metrics)

    title = f"siit run: {(metrics.get('dataset') or {}).get('name', '')}"
    best, test = metrics.get("best_round"), metrics.get("test")
    if best is not None:
        title += f", best round {best}"
    if test and "ndcg@10" in test:
        title += f", test NDCG@10 {test['ndcg@10']:.4f}"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_report(metrics_path: str | Path, out: str | Path) -> Path:
    """Draw `metrics.json` into a PNG at `out` with the panels that have data; returns `out`."""
    import matplotlib.pyplot as plt

    fig = draw(json.loads(Path(metrics_path).read_text()))
    out = Path(out)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _usage(r: dict[str, Any]) -> dict[str, list] | None:
    """A round's code usage: `usage`, else (older metrics.json) its refinement's counts."""
    usage = r.get("usage")
    if usage and usage.get("codes_used"):
        return usage
    refine = r.get("refine")
    if refine and refine.get("codes_used"):
        return {"codes_used": refine["codes_used"], "entropy_bits": refine.get("entropy_bits")}
    return None


def _diagnostics(rounds: list[dict[str, Any]]) -> tuple[list, list, list]:
    """(round, regeneration), (round, consistency) and (round, valid with moved/kept)."""
    regen = [(r["round"], (r.get("refine") or {}).get("regeneration")) for r in rounds]
    consistent = [(r["round"], r.get("consistency")) for r in rounds]
    split = [(r["round"], r.get("valid") or {}) for r in rounds]
    return (
        [(x, g) for x, g in regen if g and ("top1" in g or "topk" in g)],
        [(x, c) for x, c in consistent if c],
        [(x, v) for x, v in split if "ndcg@10_moved" in v or "ndcg@10_kept" in v],
    )


def _legend(ax, *others, ncol: int = 2) -> None:
    """One legend for the lines of `ax` and its twin axes `others`, below the panel: inside,
    it would cover the data."""
    handles, labels = ax.get_legend_handles_labels()
    for other in others:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    if handles:  # on the twin drawn last, so that no line of a twin covers it
        (others[-1] if others else ax).legend(
            handles,
            labels,
            fontsize=7,
            ncol=ncol,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            frameon=False,
        )


def _draw_validation(ax, metrics: dict[str, Any]) -> None:
    rounds = metrics.get("rounds") or []
    losses: list[tuple[str, list, list]] = []  # (task, epochs, losses) per round
    starts, offset = [], 0  # epochs of the rounds before: the curves run on one axis of epochs
    for i, r in enumerate(rounds):
        starts.append(offset)
        curve = [c for c in r.get("curve") or [] if "epoch" in c]
        valid = r.get("valid") or {}
        color = f"C{i % 10}"  # a round's colour, whether or not the rounds before have curves
        if curve:
            xs = [offset + c["epoch"] for c in curve]
            ys = [c.get("ndcg@10", float("nan")) for c in curve]
            ax.plot(xs, ys, marker=".", color=color, label=f"round {r['round']}")
            tasks = {k[len("loss_") :] for c in curve for k in c if k.startswith("loss_")}
            for task in tasks:
                pts = [(x, c.get("loss_" + task)) for x, c in zip(xs, curve, strict=True)]
                pts = [(x, y) for x, y in pts if y is not None]
                losses.append((task, [x for x, _ in pts], [y for _, y in pts]))
        best_epoch = r.get("best_epoch") or (curve[-1]["epoch"] if curve else r.get("epochs"))
        if "ndcg@10" in valid and best_epoch:
            ax.scatter(
                [offset + best_epoch],
                [valid["ndcg@10"]],
                s=60,
                color=color,
                zorder=3,
                label=None if curve else f"round {r['round']} (best)",
            )
        offset += r.get("epochs") or (curve[-1]["epoch"] if curve else 0)
        if r is not rounds[-1]:
            ax.axvline(offset + 0.5, color="grey", linewidth=0.5)

    best, test = metrics.get("best_round"), metrics.get("test")
    if test and "ndcg@10" in test and best is not None and 0 <= best < len(rounds):
        b = rounds[best]
        x = starts[best] + (b.get("best_epoch") or b.get("epochs") or 0)
        ax.scatter(
            [x],
            [test["ndcg@10"]],
            marker="*",
            s=170,
            color="black",
            zorder=4,
            label=f"test, round {best}: {test['ndcg@10']:.4f}",
        )

    popular = metrics.get("most_popular") or {}
    for split, style in (("valid", "--"), ("test", ":")):
        value = (popular.get(split) or {}).get("ndcg@10")
        if value is not None:
            ax.axhline(
                value,
                color="tab:red",
                linestyle=style,
                linewidth=1.2,
                label=f"most popular, {split}: {value:.4f}",
            )

    if not rounds or not any(r.get("curve") or r.get("valid") for r in rounds):
        ax.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax.transAxes)
    twin = None
    if losses:
        twin = ax.twinx()
        known = list(LOSS_STYLES)
        labelled = set()
        for task, xl, yl in sorted(
            losses, key=lambda t: (known.index(t[0]) if t[0] in known else len(known), t[0])
        ):
            twin.plot(
                xl,
                yl,
                color="dimgrey",
                linestyle=LOSS_STYLES.get(task, "-."),
                linewidth=1.0,
                alpha=0.7,
                label=None if task in labelled else f"train loss {task}",
            )
            labelled.add(task)
        twin.set_ylabel("training loss (grey)")
    ax.set(
        title="validation NDCG@10 and training loss per epoch",
        xlabel="epoch (rounds end to end; big dot: round's best)",
        ylabel="valid NDCG@10",
    )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, *([twin] if twin else []), ncol=3)


def _draw_usage(ax, metrics: dict[str, Any]) -> None:
    rounds = [(r["round"], _usage(r)) for r in metrics.get("rounds") or []]
    rounds = [(x, u) for x, u in rounds if u]
    levels = max(len(u["codes_used"]) for _, u in rounds)
    sizes = next((u["codebook_sizes"] for _, u in rounds if u.get("codebook_sizes")), None)
    relative = sizes is not None and len(sizes) >= levels
    twin = ax.twinx()
    for level in range(levels):
        pts = [(x, u["codes_used"][level]) for x, u in rounds if level < len(u["codes_used"])]
        ys = [y / sizes[level] if relative else y for _, y in pts]
        label = f"level {level} (of {sizes[level]})" if relative else f"level {level}"
        color = ax.plot([x for x, _ in pts], ys, marker="o", label=label)[0].get_color()
        if len(pts) == 1:  # a lone point (a baseline run): its count beside it
            ax.annotate(
                f"{pts[0][1]}" + (f"/{sizes[level]}" if relative else ""),
                (pts[0][0], ys[0]),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color=color,
            )
        ent = [
            (x, u["entropy_bits"][level])
            for x, u in rounds
            if u.get("entropy_bits") and level < len(u["entropy_bits"])
        ]
        if ent:
            twin.plot(
                [x for x, _ in ent],
                [e for _, e in ent],
                color=color,
                linestyle="--",
                marker="x",
                alpha=0.6,
                label=f"level {level} entropy",
            )
    if sizes:  # the top of the entropy axis: every code used equally often
        uniform = math.log2(max(sizes))
        twin.set_ylim(0, uniform * 1.05)  # level with the shares: 1.0 is `uniform` bits
        twin.set_ylabel(f"entropy, bits (dashed; {uniform:.3g} = uniform)")
    else:
        twin.set_ylim(bottom=0)
        twin.set_ylabel("entropy, bits (dashed)")
    xs = sorted({x for x, _ in rounds})
    ax.set_xticks(xs)
    if len(xs) == 1:
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
    if relative:
        ax.set_ylim(0, 1.05)
    else:
        ax.set_ylim(bottom=0)
    ax.set(
        title="code usage per level",
        xlabel="round",
        ylabel="share of codes used" if relative else "distinct codes used",
    )
    _legend(ax, twin, ncol=2)  # a column of codes used, one of entropy


def _draw_churn(ax, metrics: dict[str, Any]) -> None:
    refined = [r for r in metrics.get("rounds") or [] if r.get("refine")]
    rx = [r["round"] for r in refined]
    width = 0.25
    for shift, key in ((-width, "changed"), (0.0, "rank0"), (width, "fallback")):
        ax.bar(
            [x + shift for x in rx], [r["refine"].get(key, 0) for r in refined], width, label=key
        )
    ax.set_xticks(rx)
    ax.set(title="identifier churn per refinement", xlabel="round", ylabel="items")
    _legend(ax, ncol=3)


def _draw_diagnostics(ax, metrics: dict[str, Any]) -> None:
    rounds = metrics.get("rounds") or []
    regen, consistent, split = _diagnostics(rounds)
    for key in ("top1", "topk"):
        pts = [(x, g[key]) for x, g in regen if key in g]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=f"regen. {key}")
    for key in ("prefix1", "prefix2", "all"):
        pts = [(x, c[key]) for x, c in consistent if key in c]
        if pts:
            ax.plot(
                [x for x, _ in pts],
                [y for _, y in pts],
                linestyle="--",
                marker=".",
                label=f"text cosine, {key}",
            )
    twin = None
    if split:
        twin = ax.twinx() if regen or consistent else ax
        for key, style, name in (("ndcg@10_moved", "v", "moved"), ("ndcg@10_kept", "^", "kept")):
            pts = [(x, v[key]) for x, v in split if key in v]
            if pts:
                twin.plot(
                    [x for x, _ in pts],
                    [y for _, y in pts],
                    style,
                    color="black",
                    label=f"valid NDCG@10, {name} targets",
                )
        if twin is not ax:
            twin.set_ylabel("valid NDCG@10 of moved (v) / kept (^) targets")
    ax.set_xticks(sorted({x for x, _ in regen + consistent + split}))
    ylabel = "share / cosine" if regen or consistent else "valid NDCG@10"
    ax.set(title="regeneration, consistency, moved/kept", xlabel="round", ylabel=ylabel)
    _legend(ax, *([twin] if twin is not None and twin is not ax else []))
