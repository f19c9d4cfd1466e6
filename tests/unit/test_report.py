"""The PNG report: only the panels with data, sized to their number; old metrics.json files
(without `usage` or `most_popular`) and rounds without a curve still render."""

import copy
import json
import struct

import pytest

pytest.importorskip("matplotlib")

from siit.report import DPI, draw, figure_size, panels, write_report  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _curve(epochs, start=0.05, tasks=("seqrec", "item2id", "id2item")):
    points = []
    for e in range(1, epochs + 1):
        point = {
            "epoch": e,
            "ndcg@10": start + 0.1 * e / (e + 3),
            "recall@10": 2 * start + 0.15 * e / (e + 3),
            "eval_seconds": 1.5,
        }
        for i, task in enumerate(tasks):
            point[f"loss_{task}"] = (3.0 + i) / (1 + 0.3 * e)
        points.append(point)
    return points


def _round(i, epochs, refined, usage=True):
    curve = _curve(epochs, start=0.05 + 0.02 * i)
    best = max(curve, key=lambda c: c["ndcg@10"])
    valid = {"ndcg@10": best["ndcg@10"], "recall@10": best["recall@10"]}
    r = {
        "round": i,
        "valid": valid,
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "curve": curve,
        "refine": None,
        "consistency": None,
    }
    if usage:
        r["usage"] = {
            "codes_used": [200 - 10 * i, 180 - 5 * i, 150],
            "entropy_bits": [7.2 - 0.1 * i, 7.0, 6.8],
            "codebook_sizes": [256, 256, 256],
        }
    if refined:
        r["refine"] = {
            "changed": 900 // i,
            "rank0": 300 // i,
            "fallback": 20,
            "codes_used": [200 - 10 * i, 180 - 5 * i, 150],
            "entropy_bits": [7.2 - 0.1 * i, 7.0, 6.8],
            "regeneration": {"top1": 0.3 + 0.05 * i, "topk": 0.6 + 0.05 * i},
        }
        r["consistency"] = {"prefix1": 0.41, "prefix2": 0.45, "all": 0.5 + 0.01 * i}
        valid["ndcg@10_moved"] = valid["ndcg@10"] * 0.8
        valid["ndcg@10_kept"] = valid["ndcg@10"] * 1.1
    return r


def baseline():
    return {
        "dataset": {"name": "beauty"},
        "rounds": [_round(0, 12, refined=False)],
        "best_round": 0,
        "test": {"ndcg@10": 0.1, "recall@10": 0.16},
        "most_popular": {
            "valid": {"ndcg@10": 0.012, "recall@10": 0.02},
            "test": {"ndcg@10": 0.011, "recall@10": 0.019},
        },
    }


def refined_run():
    m = baseline()
    m["rounds"] += [_round(i, 6, refined=True) for i in (1, 2, 3)]
    m["best_round"] = 2
    return m


def old_format(m):
    """`m` as an older metrics.json: no `usage`, no `most_popular`, no `epoch_losses`."""
    m = copy.deepcopy(m)
    m.pop("most_popular")
    for r in m["rounds"]:
        r.pop("usage", None)
    return m


def _render(metrics, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    out = write_report(path, tmp_path / "report.png")
    data = out.read_bytes()
    assert out == tmp_path / "report.png" and data[:8] == PNG
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_a_baseline_draws_its_curve_and_its_usage(tmp_path):
    m = baseline()
    assert panels(m) == ["validation", "usage"]
    width, height = _render(m, tmp_path)
    w, h = figure_size(2)
    assert (width, height) == (round(w * DPI), round(h * DPI))
    fig = draw(m)
    assert tuple(fig.get_size_inches()) == pytest.approx(figure_size(2))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["validation NDCG@10 and training loss per epoch", "code usage per level"]


def test_a_refined_run_draws_all_four(tmp_path):
    m = refined_run()
    assert panels(m) == ["validation", "usage", "churn", "diagnostics"]
    width, _ = _render(m, tmp_path)
    assert width == round(figure_size(4)[0] * DPI)


def test_old_metrics_still_render(tmp_path):
    old = old_format(refined_run())
    assert panels(old) == ["validation", "usage", "churn", "diagnostics"]  # refine's usage
    _render(old, tmp_path)
    old_baseline = old_format(baseline())
    assert panels(old_baseline) == ["validation"]
    width, _ = _render(old_baseline, tmp_path)
    assert width == round(figure_size(1)[0] * DPI)


def test_diagnostics_only_with_data():
    m = refined_run()
    for r in m["rounds"]:
        r["consistency"] = None
        r["valid"] = {k: v for k, v in r["valid"].items() if "_moved" not in k and "_kept" not in k}
        if r["refine"]:
            r["refine"]["regeneration"] = {}
    assert panels(m) == ["validation", "usage", "churn"]
    m["rounds"][2]["valid"]["ndcg@10_moved"] = 0.05  # moved/kept alone is enough
    assert panels(m) == ["validation", "usage", "churn", "diagnostics"]


@pytest.mark.parametrize("make", [baseline, refined_run])
def test_empty_or_missing_curves_and_a_run_in_progress(tmp_path, make):
    m = make()
    m["rounds"][0]["curve"] = []
    m["rounds"][-1].pop("curve")
    m["rounds"][-1].pop("best_epoch")
    m["test"], m["best_round"] = None, None
    _render(m, tmp_path)
    no_losses = make()
    for r in no_losses["rounds"]:
        r["curve"] = [{k: v for k, v in c.items() if not k.startswith("loss_")} for c in r["curve"]]
    _render(no_losses, tmp_path)
    _render({"dataset": {"name": "x"}, "rounds": [], "best_round": None, "test": None}, tmp_path)
