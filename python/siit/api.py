"""`siit.train` and `siit.evaluate`."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from .config import OBJECT, EvalSettings, TrainConfig, is_item_level
from .data import Dataset, item_texts
from .embed import embed
from .identifiers import Identifiers
from .models import (
    DTYPES,
    TEXT_INPUT_DEFAULTS,
    ItemRecModel,
    Model,
    RecModel,
    build_model,
    check_model,
    load_model,
)
from .report import write_report
from .runs import RUNS, check_run_dir, load_run
from .tasks import TaskBuilder
from .tokenizers import Tokenizer
from .training import (
    BEST,
    CHECKPOINT,
    Processes,
    RoundResult,
    Trainer,
    TrainResult,
    check_dataset,
    check_fits,
    device_for,
    evaluate_samples,
    load_dataset,
    make_tokenizer,
)

log = logging.getLogger("siit")

# Settings that may change when a run resumes; the rest must stay as the run started.
RESUMABLE = {"device", "threads", "progress"}
# A finished run without rounds may also be extended with refinement rounds: their number,
# the refine levers and the schedule of the rounds to come (round 0's cap is what it trained).
EXTENSIBLE = {"rounds", "refine", "schedule"}


def _reads_text(model: str, text_input: bool | str | None, data: Dataset) -> bool:
    """Whether an item-level model reads item text vectors as input: `network.options`
    text_input True (the dataset must have text), False, or "auto" (where the dataset has
    text); unset, the preset's default (`TEXT_INPUT_DEFAULTS`: "auto" for item-mini and
    item-small)."""
    if text_input is None:
        text_input = TEXT_INPUT_DEFAULTS.get(model, False)
    if text_input != "auto":
        return bool(text_input)
    if data.has_text:
        log.info("%s reads item text as input (network.options text_input=False: off)", model)
        return True
    log.info("%s reads no item text: dataset %r has none", model, data.name)
    return False


def _logging(run_dir: Path, main: bool) -> None:
    logger = logging.getLogger("siit")
    logger.setLevel(logging.INFO)
    if (
        not any(getattr(h, "_siit", False) for h in logger.handlers)
        and not logging.getLogger().handlers
    ):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        console._siit = True  # type: ignore[attr-defined]
        logger.addHandler(console)
    for h in [h for h in logger.handlers if getattr(h, "_siit_file", False)]:
        logger.removeHandler(h)
        h.close()
    if main:
        file = logging.FileHandler(run_dir / "train.log")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file._siit_file = True  # type: ignore[attr-defined]
        logger.addHandler(file)


def _config(
    config: TrainConfig | None, resume: str | Path | None, settings: dict[str, Any]
) -> tuple[TrainConfig, bool]:
    """The run's settings and whether they extend a finished run with refinement rounds."""
    if resume is None:
        return (config or TrainConfig()).replace(**settings).check(), False
    check_run_dir(resume)
    if config is not None:
        raise ValueError("a resumed run keeps its configuration; pass settings, not config=")
    changes = {k: v for k, v in settings.items() if k != "dataset"}
    recorded = TrainConfig.from_run(resume).replace(output_dir=str(resume))
    extends = changes.get("rounds", recorded.rounds) != recorded.rounds
    base = _extended(recorded, Path(resume)) if extends else recorded
    cfg = base.replace(**changes).check()
    allowed = RESUMABLE | (EXTENSIBLE if extends else set())
    before, after = base.to_dict(), cfg.to_dict()
    changed = sorted(k for k in after if after[k] != before[k] and k not in allowed)
    first = "max_epochs_first_round"
    if extends and after["schedule"][first] != before["schedule"][first]:
        changed.append("schedule.max_epochs_first_round (round 0 has trained)")
    if changed:
        raise ValueError(
            f"a resumed run keeps its configuration; only {sorted(RESUMABLE)} may change, and "
            f"rounds, refine and schedule when a finished run without rounds is extended with "
            f"rounds (got changes to {changed})"
        )
    return cfg, extends


def _extended(recorded: TrainConfig, run: Path) -> TrainConfig:
    """A finished baseline's settings as the base of more rounds: round 0's epoch cap
    pinned as `max_epochs_first_round`, and the refine levers and the later rounds' cap back
    at None, so that the refine preset fills them as for a run started with rounds."""
    state = json.loads((run / CHECKPOINT / "state.json").read_text())
    if recorded.rounds != 0 or state["round"] != 1:
        raise ValueError(
            f"cannot extend {run} with rounds: only a finished run without rounds can be "
            f"(it has rounds={recorded.rounds} and its checkpoint is in round "
            f"{state['round']}); resume it as it is, or train a new run with rounds"
        )
    levers = {
        f"refine.{f.name}": None for f in dataclasses.fields(recorded.refine) if f.default is None
    }
    first = recorded.schedule.max_epochs_first_round or recorded.schedule.max_epochs_per_round
    return recorded.replace(
        **levers,
        **{"schedule.max_epochs_first_round": first, "schedule.max_epochs_per_round": None},
    )


def train(
    dataset: Dataset | str | None = None,
    tokenizer: Tokenizer | Identifiers | str | None = None,
    model: Model | str | None = None,
    rounds: int | None = None,
    output_dir: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    resume: str | Path | None = None,
    **settings: Any,
) -> TrainResult:
    """Train a generative recommender with SIIT rounds and return the best round.

    Args:
        dataset: a `Dataset` or a `TrainConfig.dataset` spec (default: MovieLens-100K).
        tokenizer: initial identifiers: a tokenizer (fitted here), `Identifiers`, a tokenizer
            name or an identifiers file (default: CID).
        model: a `RecModel` or `ItemRecModel`, a preset, a Hugging Face name or a directory
            (default: item-mini).
        rounds: refinement rounds (0: the baseline with the initial identifiers).
        output_dir: the run directory (default: runs/<dataset>-<tokenizer>-<time>).
        config: base settings; `settings` override single fields (see `TrainConfig`).
        resume: a run directory to continue from its last checkpoint; with `rounds`, a
            finished run without rounds is extended with refinement rounds (docs/runs.md).
    """
    for key, value in (("dataset", dataset), ("tokenizer", tokenizer), ("model", model)):
        if isinstance(value, str):
            settings[key] = value
        elif value is not None and resume is None:  # recorded, so config.json says what ran
            settings[key] = f"{OBJECT}{getattr(value, 'name', type(value).__name__)}"
    if rounds is not None:
        settings["rounds"] = rounds
    if output_dir is not None:
        settings["output_dir"] = str(output_dir)
    called = time.perf_counter()
    cfg, extends = _config(config, resume, settings)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    procs = Processes.start(
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    device = device_for(cfg, procs)
    if not isinstance(model, RecModel | ItemRecModel) and resume is None:
        check_model(cfg.model, cfg.network.gguf_file, cfg.network.options)
    if isinstance(model, RecModel | ItemRecModel) and resume is not None:
        raise ValueError("a resumed run loads its model from the checkpoint; do not pass model=")

    data = (
        dataset if isinstance(dataset, Dataset) else load_dataset(cfg.dataset, cfg.data.max_history)
    )
    check_dataset(cfg, data)
    run_dir = _run_dir(cfg, data, procs)
    cfg.output_dir = str(run_dir)
    _logging(run_dir, procs.main)
    if procs.main and (resume is None or extends):
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    log.info("%r", data)
    log.info("run directory %s, %d process(es) on %s", run_dir, procs.world, device)

    checkpoint = run_dir / CHECKPOINT
    if resume is not None:
        if not (checkpoint / "state.json").is_file():
            raise FileNotFoundError(f"cannot resume: {checkpoint} holds no checkpoint")
        identifiers = Identifiers.load(checkpoint / "identifiers.npz")
        rec = load_model(checkpoint / "model", device)
    else:
        identifiers = _initial_identifiers(tokenizer, cfg, data, procs)
        if isinstance(model, RecModel | ItemRecModel):
            rec = model
            rec.model.to(device)
        else:
            options = dict(cfg.network.options)
            text = None
            text_input = _reads_text(cfg.model, options.pop("text_input", None), data)
            text_prior = options.pop("text_prior", False)  # item-level: text -> identifier
            if text_input or text_prior:
                data.require_text(f"network.options {'text_input' if text_input else 'text_prior'}")
                text = embed(item_texts(data), progress=cfg.progress and procs.main)
                if text_input:
                    options["text_dim"] = text.shape[1]
                if text_prior:
                    options["prior_dim"] = text.shape[1]
            rec = build_model(
                cfg.model,
                identifiers.codebook_sizes,
                identifiers.prefixes,
                item_texts(data) if any(data.item_text) and not is_item_level(cfg.model) else [],
                cfg.network.text_vocab_size,
                cfg.network.gguf_file,
                cfg.seed,
                **options,
            )
            rec.model.to(device)
            if text is not None:
                rec.set_item_text(text)
    rec.model.to(DTYPES[cfg.network.dtype])
    if cfg.network.item2id_input == "embedding":
        vectors = embed(item_texts(data), progress=cfg.progress and procs.main)
        if not rec.vector_tokens:  # a resumed model has its projection already
            rec.add_item_projection(vectors.shape[1], cfg.network.item2id_vector_tokens)
        rec.set_item_vectors(vectors)
    check_fits(rec, identifiers, cfg)
    torch.manual_seed(cfg.seed + procs.rank)

    trainer = Trainer(cfg, data, identifiers, rec, run_dir, procs)
    if resume is not None:
        trainer.load_checkpoint(checkpoint)
        log.info(
            "resuming at round %d epoch %d step %d",
            trainer.state["round"],
            trainer.state["epoch"],
            trainer.state["step"],
        )
    if extends:  # metrics.json no longer holds the finished baseline's test
        log.info("extending the finished run with %d refinement round(s)", cfg.rounds)
        trainer.write_metrics()
    started = time.perf_counter()
    trainer.fit()

    best = run_dir / BEST
    best_round = trainer.state["best_round"]
    rec = load_model(best / "model", device)
    rec.model.to(DTYPES[cfg.network.dtype])
    identifiers = Identifiers.load(best / "index.json", identifiers.codebook_sizes)
    tasks = TaskBuilder(
        rec, data, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    test_samples = data.test_samples()
    seen = data.seen_items(test_samples) if cfg.eval.exclude_history else None
    test = evaluate_samples(rec, tasks, identifiers, test_samples, cfg, procs, "test", seen)
    log.info(
        "best round %d; test: %s (%.0f s training)",
        best_round,
        ", ".join(f"{k} {v:.4f}" for k, v in test.items()),
        time.perf_counter() - started,
    )
    popular = trainer.most_popular["test"]
    trainer.rec = rec
    trainer.write_metrics(test)
    paths = {
        "metrics": run_dir / "metrics.json",
        "config": run_dir / "config.json",
        "best": best,
        "checkpoint": checkpoint,
        "index": run_dir / "index",
    }
    if procs.main:
        paths["report"] = write_report(run_dir / "metrics.json", run_dir / "report.png")
    procs.barrier()
    rounds_ = [RoundResult(**r) for r in trainer.state["rounds"]]
    result = TrainResult(
        rec,
        identifiers,
        rounds_,
        best_round,
        test,
        run_dir,
        paths,
        popular,
        time.perf_counter() - called,
    )
    log.info("%s", result.summary())
    return result


def _run_dir(cfg: TrainConfig, data: Dataset, procs: Processes) -> Path:
    if cfg.output_dir is not None:
        path = Path(cfg.output_dir)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        tok = (
            Path(cfg.tokenizer).stem
            if cfg.tokenizer not in ("rqvae", "letter", "cid", "random")
            else cfg.tokenizer
        )
        path = RUNS / f"{data.name}-{tok}-r{cfg.rounds}-s{cfg.seed}-{stamp}"
        path = Path(procs.gather(str(path))[0])  # every rank uses rank 0's name
    if procs.main:
        path.mkdir(parents=True, exist_ok=True)
    procs.barrier()
    return path


def _initial_identifiers(
    tokenizer: Any, cfg: TrainConfig, data: Dataset, procs: Processes
) -> Identifiers:
    if isinstance(tokenizer, Identifiers):
        identifiers = tokenizer
    elif procs.main:
        fitter = (
            tokenizer
            if isinstance(tokenizer, Tokenizer)
            else make_tokenizer(
                cfg.tokenizer,
                cfg.identifiers.levels,
                cfg.identifiers.codebook_size,
                cfg.seed,
                **cfg.identifiers.options,
            )
        )
        log.info("fitting initial identifiers with %s", type(fitter).__name__)
        identifiers = fitter.fit(data)
    else:
        identifiers = None  # type: ignore[assignment]
    # one tokenizer fit, shared by every rank
    codes = procs.gather(
        None
        if identifiers is None
        else (
            identifiers.codes,
            identifiers.codebook_sizes,
            identifiers.item_ids,
            identifiers.prefixes,
        )
    )[0]
    identifiers = Identifiers(*codes)
    if identifiers.n_items != data.n_items:
        raise ValueError(
            f"initial identifiers cover {identifiers.n_items} items, the dataset {data.n_items}"
        )
    if not identifiers.is_unique():
        raise ValueError("initial identifiers must be unique (Identifiers.make_unique)")
    return identifiers


def evaluate(
    run: str | Path | None = None,
    dataset: Dataset | str | None = None,
    split: str = "test",
    at: str = "best",
    **settings: Any,
) -> dict[str, float]:
    """Metrics of a run's best model (`at="best"`) or last checkpoint (`at="last"`) on a
    split ("test" or "valid"); `settings` override the `eval` section's fields (beams, mode,
    batch_size, exclude_history) and device or threads."""
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    cfg, rec, identifiers = load_run(run, settings.get("device", "cpu"), at)
    fields = {f.name for f in dataclasses.fields(EvalSettings)}
    changes = {f"eval.{k}" if k in fields else k: v for k, v in settings.items()}
    cfg = cfg.replace(**changes).check()
    data = (
        dataset
        if isinstance(dataset, Dataset)
        else load_dataset(dataset or cfg.dataset, cfg.data.max_history)
    )
    tasks = TaskBuilder(
        rec, data, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    samples = data.test_samples() if split == "test" else data.valid_samples()
    seen = data.seen_items(samples) if cfg.eval.exclude_history else None
    return evaluate_samples(rec, tasks, identifiers, samples, cfg, desc=split, seen=seen)
