"""The Python examples of README.md and docs/*.md run (issue "The first hour with siit").

Every fenced ```python block runs, unless the line right before its fence is an HTML
comment `<!-- no-test: reason -->`. The blocks of one file run in order in one shared
namespace (a later block may use what an earlier one made), in a temporary working
directory. Training is made tiny: `siit.train` keeps the example's data and recipe
settings but trains a tiny preset for one epoch per round, so each example takes seconds.
Files whose examples need MovieLens-100K are skipped where its files are not installed
(`pip install --no-deps recbole==1.2.1`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import siit
import siit.api

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose examples train several runs or embed a catalogue: tens of seconds.
# pages whose examples train several runs (every page runs in the full suite)
SLOW = {"docs/training.md", "docs/serving.md", "docs/runs.md", "README.md"}

FENCE = re.compile(r"^```python\s*$")
NO_TEST = re.compile(r"^<!--\s*no-test:\s*\S.*-->$")

# What every training example becomes: a tiny model, one epoch per round, a small
# validation subset, quiet, on the CPU. The example's data, identifiers, rounds and
# refinement settings stay as written.
TINY = {
    "schedule.max_epochs_per_round": 1,
    "schedule.max_epochs_first_round": 1,
    "schedule.patience": None,
    "schedule.max_minutes_per_round": None,
    "eval.every": 1,
    "eval.valid_users": 50,
    "network.text_vocab_size": 300,
    "refine.diagnostics": False,
}
# Refinement made cheaper, unless the example sets these itself.
TINY_REFINE = {"beams": 4, "occurrences": 1}
RUNTIME = dict(progress=False, device="cpu", threads=1)
# Tokenizers that train a network: a few epochs are enough to run.
TOKENIZER_EPOCHS = 3


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line of the opening fence, code) of every block that runs."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{i + 1}: unclosed ```python block")
        skipped = i > 0 and NO_TEST.match(lines[i - 1].strip())
        if not skipped:
            blocks.append((i + 1, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def _tiny_model(name: Any) -> str:
    """The tiny preset of the example's model family."""
    text = str(name or "item-mini").lower()
    if text.startswith("item-"):
        return "item-tiny"
    return "t5-tiny" if "t5" in text else "gpt-tiny"


def tiny_train(real):
    def train(
        dataset=None,
        tokenizer=None,
        model=None,
        rounds=None,
        output_dir=None,
        *,
        config=None,
        resume=None,
        **settings,
    ):
        settings.update(RUNTIME)
        if resume is not None and rounds is not None:  # a baseline extended with rounds
            settings.setdefault("schedule.max_epochs_per_round", 1)
        if resume is None:
            named = model if isinstance(model, str) else None
            chosen = named or settings.pop("model", None) or (config.model if config else None)
            if model is None or isinstance(model, str):  # not a RecModel object
                model = _tiny_model(chosen)
            if isinstance(settings.get("network"), dict):
                settings["network"].pop("gguf_file", None)
            settings.update(TINY)
            given = settings.get("refine") if isinstance(settings.get("refine"), dict) else {}
            default = siit.TrainConfig().refine
            for name, value in TINY_REFINE.items():
                mine = getattr(config.refine, name) if config else getattr(default, name)
                if name not in given and mine == getattr(default, name):
                    settings[f"refine.{name}"] = value
            name = settings.get("tokenizer") or (config.tokenizer if config else None)
            if name in ("rqvae", "letter"):
                options = dict(config.identifiers.options if config else {})
                options.update((settings.get("identifiers") or {}).get("options") or {})
                settings["identifiers.options"] = {**options, "epochs": TOKENIZER_EPOCHS}
            if hasattr(tokenizer, "epochs"):
                tokenizer.epochs = min(tokenizer.epochs, TOKENIZER_EPOCHS)
        return real(
            dataset,
            tokenizer,
            model,
            rounds,
            output_dir,
            config=config,
            resume=resume,
            **settings,
        )

    return train


def _movielens_missing(err: BaseException) -> bool:
    return "recbole==1.2.1" in str(err)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.relative_to(ROOT).as_posix(), marks=[pytest.mark.slow])
        if p.relative_to(ROOT).as_posix() in SLOW
        else pytest.param(p, id=p.relative_to(ROOT).as_posix())
        for p in DOCS
    ],
)
def test_examples_run(path: Path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.relative_to(ROOT)} has no Python examples")
    monkeypatch.chdir(tmp_path)
    wrapped = tiny_train(siit.api.train)
    monkeypatch.setattr(siit.api, "train", wrapped)
    monkeypatch.setattr(siit, "train", wrapped, raising=False)
    namespace: dict[str, Any] = {"__name__": "__doc_example__"}
    for line, code in blocks:
        # padded so that tracebacks point at the Markdown file's own lines
        compiled = compile("\n" * line + code, str(path), "exec")
        try:
            exec(compiled, namespace)
        except Exception as err:
            if _movielens_missing(err):
                pytest.skip("MovieLens-100K is not installed (pip install --no-deps recbole)")
            raise AssertionError(
                f"{path.relative_to(ROOT)}: the example at line {line} failed: "
                f"{type(err).__name__}: {err}"
            ) from err


def test_no_team_paths_in_docs():
    """Examples read what a user has: no paths into this team's shared checkout."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        assert "shared/data" not in text, f"{path.name} points into ../shared/data"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_relative_links_resolve():
    """Every relative Markdown link of the README and docs/ names an existing file, and
    its #anchor a heading there (docs/settings.md is generated by
    `python -m siit.settings_doc`)."""
    link = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
    for path in DOCS:
        for target, anchor in link.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve() if target else path
            where = f"{path.relative_to(ROOT)} links {target}#{anchor}"
            if resolved == ROOT / "docs" / "settings.md" and not resolved.exists():
                continue
            assert resolved.exists(), f"{where}, which is missing"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{where}: no such heading"
