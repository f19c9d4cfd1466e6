"""What the benchmarks share: where runs and results live, the provenance every result
records (commit, machine, software versions, load), and the grid's plumbing (identifier
files fitted once per dataset and tokenizer, arms run as `siit train` subprocesses that
resume). Benchmarks import this module, never each other.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tomllib
from siit.config import SECTIONS

HERE = Path(__file__).parent
RUNS = HERE / "runs"
OUT = HERE / "results"


def provenance() -> dict[str, Any]:
    """Where and with what a result is measured now: commit (with `+dirty` when the tree has
    uncommitted changes), CPU, cores, software versions, torch threads, date, load."""
    import numpy as np
    import siit
    import torch
    import transformers

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE)
        except OSError:  # no git on this machine
            return ""
        return done.stdout.strip()

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown")
        + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "siit": siit.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line of `provenance()` for a results page."""
    return (
        f"{info['cpu']}, {info['cores']} cores | Python {info['python']}, "
        f"numpy {info['numpy']}, torch {info['torch']} ({info['torch_threads']} threads), "
        f"transformers {info['transformers']}, siit {info['siit']} | commit {info['commit']} | "
        f"{info['date']} | load {info['load_average_1min']:.2f}"
    )


def markdown_table(
    header: list[str], rows: list[list[Any]], right: set[int] = frozenset()
) -> list[str]:
    """A Markdown table; columns whose index is in `right` are right-aligned."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def write_results(name: str, payload: dict[str, Any], lines: list[str]) -> None:
    """`OUT/name.json` (the payload) and `OUT/name.md` (the lines), then prints the lines."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(payload, indent=1, default=float))
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# -- grids -----------------------------------------------------------------------------------


def identifier_shape(tokenizer: str, sizes: dict[str, tuple[int, int]]) -> tuple[str, int, int]:
    """A grid's tokenizer name as (method, levels, codebook size): "rqvae" has the bench's
    shape in `sizes`, "rqvae-4x256" says its own."""
    method, _, shape = tokenizer.partition("-")
    if not shape:
        return (method, *sizes[method])
    levels, size = shape.split("x")
    return method, int(levels), int(size)


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


def _read(value: str) -> dict:
    """A JSON object given inline, or the path of a .json or .toml file."""
    if value.endswith(".toml"):
        return tomllib.loads(Path(value).read_text())
    return json.loads(Path(value).read_text() if value.endswith(".json") else value)


def settings_arg(value: str) -> dict:
    """TrainConfig settings (inline JSON, .json or .toml) with the sections' fields as dotted
    names (`refine.margin`), so that they merge field by field."""
    return flat(_read(value))


def arms_arg(value: str) -> dict[str, dict]:
    """`{"ARM": {settings}}` (inline JSON, .json or .toml: a table per arm), each arm's
    settings as `settings_arg` gives them."""
    return {name: flat(arm) for name, arm in _read(value).items()}


def flat(settings: dict) -> dict:
    """`{"refine": {"margin": 1}}` as `{"refine.margin": 1}` (sections one level deep)."""
    out = {}
    for key, value in settings.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            out[key] = value
    return out


def finished(arm: dict) -> dict | None:
    """A run's metrics once it has its test figures for the rounds the arm asks (a copy of
    a finished baseline that an arm extends has the baseline's)."""
    metrics = Path(arm["output_dir"]) / "metrics.json"
    if not metrics.exists():
        return None
    done = json.loads(metrics.read_text())
    rounds = arm["settings"].get("rounds", done["config"]["rounds"])
    return done if done.get("test") and done["config"]["rounds"] == rounds else None


def run(arm: dict) -> dict:
    """Train an arm (resuming its checkpoint if any) in a `siit train` subprocess. An arm
    with `extends` (a finished run without rounds) starts from a copy of that run and
    resumes it with its rounds and settings, so that round 0 is not trained again."""
    done = finished(arm)
    if done is not None:
        return done
    out = Path(arm["output_dir"])
    config = out.with_suffix(".json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(arm["settings"], indent=1))
    cmd = [sys.executable, "-m", "siit", "train"]
    checkpoint = out / "checkpoint" / "state.json"
    if arm.get("extends") and not checkpoint.exists():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(arm["extends"], out)
    if not checkpoint.exists():
        cmd += ["--config", str(config)]
    elif arm.get("extends"):  # the settings again: rounds extend the copy, equal ones no change
        cmd += ["--resume", str(out)]
        cmd += [f"{name}={json.dumps(value)}" for name, value in arm["settings"].items()]
    else:
        cmd += ["--resume", str(out)]
    log = out.with_suffix(".log")
    start = time.time()
    with log.open("a") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT)
    print(f"{out.name}: {time.time() - start:.0f} s", flush=True)
    return json.loads((out / "metrics.json").read_text())


def grid_args(parser: argparse.ArgumentParser) -> None:
    """The grid's axes, shared by the benchmarks that train over datasets x tokenizers x seeds."""
    parser.add_argument("--datasets", nargs="+", default=["movielens"])
    parser.add_argument("--tokenizers", nargs="+", default=["rqvae", "cid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)


def run_arms(arms: list[dict], jobs: int, report: bool) -> list[dict | None]:
    """Every arm's metrics: run (resuming) `jobs` at a time, or with `report` only those
    that finished (None for the others)."""
    if report:
        return [finished(arm) for arm in arms]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(run, arms))
