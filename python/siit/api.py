"""`siit.train`, `siit.evaluate` and `siit.recommend`."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._core import assign_unique
from .config import OBJECT, EvalSettings, TrainConfig, is_item_level
from .data import Dataset, item_texts
from .decoding import TrieTables, beam_search, top_items, use_exact
from .embed import embed
from .files import atomic_write
from .identifiers import Identifiers
from .mapper import TextMapper
from .models import DTYPES, ItemRecModel, Model, RecModel, build_model, check_model_name, load_model
from .report import write_report
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

RUNS = Path("runs")
# Beside best/index.json: the identifiers of every item, those added after training included.
CATALOG = "catalog.index.json"
# Beside it: the text -> identifier mapper of a run without the item2id task (add_items).
MAPPER = "text_mapper"
# Settings that may change when a run resumes; the rest must stay as the run started.
RESUMABLE = {"device", "threads", "progress"}


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
) -> TrainConfig:
    if resume is None:
        return (config or TrainConfig()).replace(**settings).check()
    check_run_dir(resume)
    fixed = sorted(set(settings) - RESUMABLE - {"dataset"})
    if fixed or config is not None:
        raise ValueError(
            f"a resumed run keeps its configuration; only {sorted(RESUMABLE)} may "
            f"change (got {fixed or 'config'})"
        )
    changes = {k: v for k, v in settings.items() if k != "dataset"}
    return TrainConfig.from_run(resume).replace(**changes, output_dir=str(resume)).check()


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
        resume: a run directory to continue from its last checkpoint.
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
    cfg = _config(config, resume, settings)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    procs = Processes.start(
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    device = device_for(cfg, procs)
    if not isinstance(model, RecModel | ItemRecModel) and resume is None:
        check_model_name(cfg.model, cfg.network.gguf_file)
    if isinstance(model, RecModel | ItemRecModel) and resume is not None:
        raise ValueError("a resumed run loads its model from the checkpoint; do not pass model=")

    data = (
        dataset if isinstance(dataset, Dataset) else load_dataset(cfg.dataset, cfg.data.max_history)
    )
    check_dataset(cfg, data)
    run_dir = _run_dir(cfg, data, procs)
    cfg.output_dir = str(run_dir)
    _logging(run_dir, procs.main)
    if procs.main and resume is None:
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
            if options.pop("text_input", False):  # item-level: item text vectors as input
                data.require_text("model_options text_input")
                text = embed(item_texts(data), progress=cfg.progress and procs.main)
                options["text_dim"] = text.shape[1]
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


def load_run(
    run: str | Path | None = None, device: str = "cpu", at: str = "best", catalog: bool = False
) -> tuple[TrainConfig, Model, Identifiers]:
    """A run's configuration, model and identifiers (default: the newest run under ./runs):
    `at="best"` the best round's, `at="last"` the last checkpoint's (the final round of a
    finished run, so a fixed schedule can be compared without selection on validation).
    `catalog=True` includes the items added after training (`add_items`)."""
    if at not in ("best", "last"):
        raise ValueError(f"at must be 'best' or 'last', got {at!r}")
    run_dir = check_run_dir(run) if run is not None else _latest_run()
    cfg = TrainConfig.from_run(run_dir)
    if at == "best":
        best = run_dir / BEST
        if not (best / "model").is_dir():
            raise FileNotFoundError(f"{run_dir} has no finished round ({best} is missing)")
        rec = load_model(best / "model", device)
        index = best / CATALOG if catalog and (best / CATALOG).is_file() else best / "index.json"
        identifiers = Identifiers.load(index, rec.codebook_sizes)
    else:
        checkpoint = run_dir / CHECKPOINT
        if not (checkpoint / "state.json").is_file():
            raise FileNotFoundError(f"{run_dir} has no checkpoint ({checkpoint} is missing)")
        rec = load_model(checkpoint / "model", device)
        identifiers = Identifiers.load(checkpoint / "identifiers.npz")
    return cfg, rec, identifiers


def check_run_dir(path: str | Path) -> Path:
    """`path` if it is a run directory; else a ValueError that names it, says what a run
    directory holds and, for a folder of runs, lists them."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    what = (
        f"{path} is not a run directory: a run directory (made by siit.train) holds "
        "config.json, metrics.json, train.log, report.png and best/"
    )
    if not path.exists():
        raise ValueError(f"{what}; {path} does not exist")
    runs = sorted(p.parent.name for p in path.glob("*/config.json"))
    if runs:
        shown = ", ".join(runs[-10:]) + (f" (and {len(runs) - 10} more)" if len(runs) > 10 else "")
        raise ValueError(f"{what}; it holds {len(runs)} run(s): {shown}")
    raise ValueError(what)


def _latest_run() -> Path:
    runs = sorted(
        (p for p in RUNS.glob("*") if (p / BEST).is_dir()), key=lambda p: p.stat().st_mtime
    )
    if not runs:
        raise FileNotFoundError(f"no finished run under {RUNS.resolve()}; pass run=DIR")
    return runs[-1]


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


class Recommender:
    """A finished run loaded once for serving: its model, identifiers and the trie's decoding
    tables on a device. `recommend` takes many users' histories at once and ranks them in
    batches of `batch_size` users: by trie-constrained beam search, or for item-level models
    by exact scores of the whole catalogue (the run's `eval_mode`)."""

    def __init__(self, config: TrainConfig, model: Model, identifiers: Identifiers) -> None:
        self.config, self.model, self.identifiers = config, model, identifiers
        self.tables = TrieTables.of(identifiers, model.device)
        self.exact = use_exact(config.eval.mode, model, identifiers.n_items)
        self._tasks = TaskBuilder(model, None, identifiers)
        ids = np.asarray(identifiers.item_ids, dtype=str)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    @classmethod
    def load(cls, run: str | Path | None = None, device: str = "cpu", at: str = "best"):
        """The run's best round (`at="best"`) or last checkpoint (`at="last"`); default: the
        newest finished run under ./runs."""
        return cls(*load_run(run, device, at, catalog=True))

    def __repr__(self) -> str:
        return (
            f"Recommender({self.identifiers.n_items} items, identifiers "
            f"{self.identifiers.n_levels} x {list(self.identifiers.codebook_sizes)}, "
            f"model {self.config.model!r} on {self.model.device}, "
            f"history up to {self.config.data.max_history} items)"
        )

    @property
    def item_ids(self) -> list[str]:
        return list(self.identifiers.item_ids)

    def indices(
        self, histories: Sequence[Sequence[str | int]], indices: bool = False
    ) -> list[np.ndarray]:
        """Item indices of each history in a batch. Items are item ids: `1` and `"1"` name
        the same item. With `indices=True` they are 0-based item indices instead (ints).
        A flat sequence of ids, an unknown id and an empty history raise, naming it."""
        histories = _batch(histories)
        out = []
        n = self.identifiers.n_items
        for user, history in enumerate(histories):
            items = np.asarray(history)
            if items.size == 0:
                raise ValueError(f"histories[{user}] is empty")
            if indices:
                if items.dtype.kind not in "iu":
                    raise TypeError(
                        f"histories[{user}]: indices=True takes integer item indices, got "
                        f"{items.dtype} values"
                    )
                bad = np.flatnonzero((items < 0) | (items >= n))
                if len(bad):
                    raise ValueError(
                        f"histories[{user}][{bad[0]}] = {int(items[bad[0]])} is not an item "
                        f"index (0..{n - 1})"
                    )
                out.append(items.astype(np.int64))
                continue
            if items.dtype.kind == "f":
                raise TypeError(f"histories[{user}] holds floats; item ids are strings or integers")
            items = items.astype(str)
            pos = np.minimum(np.searchsorted(self._sorted, items), n - 1)
            bad = np.flatnonzero(self._sorted[pos] != items)
            if len(bad):
                raise ValueError(
                    f"histories[{user}][{bad[0]}] = {str(items[bad[0]])!r} is not a known item id"
                )
            out.append(self._order[pos])
        return out

    def recommend(
        self,
        histories: Sequence[Sequence[str | int]],
        k: int = 10,
        exclude_history: bool = True,
        batch_size: int | None = None,
        indices: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-k next items of every history in a batch (a list of histories, each a
        list of item ids oldest first; `1` and `"1"` are the same id, `indices=True` reads
        ints as 0-based item indices): item ids (n, k) and their log-probabilities (n, k),
        best first. Each history is its last `max_history` items. Serving leaves the
        history's own items out (`exclude_history=True`); the run's metrics keep them, as
        the literature does. Slots that no valid item fills hold "" and -inf."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows = self.indices(histories, indices)
        width = self.config.data.max_history
        hist = np.full((len(rows), width), -1, dtype=np.int64)
        seen = np.full((len(rows), max((len(r) for r in rows), default=1)), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            kept = r[-width:]
            hist[i, width - len(kept) :] = kept
            seen[i, : len(r)] = r
        beams = max(k, self.config.eval.beams)
        step = batch_size or self.config.eval.batch_size
        items = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf)
        for lo in range(0, len(rows), step):
            prompt, _ = self._tasks.seqrec(hist[lo : lo + step])
            exclude = seen[lo : lo + step] if exclude_history else None
            top, score = top_items(
                self.model, prompt, beams, self.tables, self.identifiers, self.exact, exclude
            )
            items[lo : lo + step] = top[:, :k]
            scores[lo : lo + step] = score[:, :k]
        ids = np.asarray(self.identifiers.item_ids, dtype=object)[np.maximum(items, 0)]
        return np.where(items >= 0, ids, ""), scores


def _is_id(value: Any) -> bool:
    """One item id (or index), as opposed to a sequence of them."""
    return isinstance(value, str | bytes | int | np.integer)


def _batch(histories: Any) -> Sequence[Any]:
    """`histories` as a batch of histories; a flat sequence of ids (or a string) is refused,
    since reading each id as a history would be a silent wrong answer."""
    if _is_id(histories):
        raise TypeError(
            "histories must be a batch: a list of histories, each a list of item ids; "
            f"got {type(histories).__name__} {histories!r}"
        )
    batch = list(histories)  # a 1-D array or a flat list yields ids, refused below
    flat = [i for i, h in enumerate(batch) if _is_id(h)]
    if flat:
        raise TypeError(
            f"histories[{flat[0]}] is a single item id ({batch[flat[0]]!r}), not a history: "
            "histories is a list of histories, so one user's history is [[id, id, ...]] "
            "(or call siit.recommend(history, run=...))"
        )
    return batch


@dataclass
class AddedItems:
    """What `add_items` did: the grown identifiers (every item), the new items' codes, and
    for each new item the rank of the beam it got (-1: none was free, so the nearest free
    identifier to its best beam)."""

    identifiers: Identifiers
    item_ids: list[str]
    codes: np.ndarray
    rank: np.ndarray
    path: Path


def add_items(
    run: str | Path,
    items: Mapping[str, Mapping[str, Any]],
    device: str = "cpu",
    beams: int | None = None,
    dataset: Dataset | None = None,
) -> AddedItems:
    """Identifiers for items that arrived after training, without retraining, from each new
    item's text: a run that learned the item2id task beam-searches them with its own model;
    any other run uses a text mapper (item text embedding -> codes level by level) fitted on
    the run's catalogue at the first call and kept in `best/text_mapper/`. The core's
    `assign_unique` places them with every existing identifier reserved. The run's catalogue
    (`best/catalog.index.json`) grows, so `siit.load(run).recommend` can return the new
    items; the run's own index and its evaluation stay as trained.

    `items` maps new item ids to text records ({"title": ..., "description": ...}).
    `dataset`: the run's dataset, needed only to fit the mapper of a run trained on a
    `Dataset` object (a named or file dataset is loaded again)."""
    run_dir = check_run_dir(run)
    cfg, rec, identifiers = load_run(run_dir, device, catalog=True)
    ids = [str(i) for i in items]
    known = set(identifiers.item_ids)
    clash = [i for i in ids if i in known]
    if clash:
        raise ValueError(f"item {clash[0]!r} is already in the run's catalogue")
    records = []
    for item, record in zip(ids, items.values(), strict=True):
        if not isinstance(record, Mapping):
            raise ValueError(f"item {item!r}: expected a mapping of text fields")
        records.append({k: "" if v is None else v for k, v in record.items()})
    if not records:
        raise ValueError("items is empty")
    texts = item_texts(records)
    empty = [i for i, t in zip(ids, texts, strict=True) if not t.strip()]
    if empty:
        raise ValueError(f"item {empty[0]!r} has no text to map to an identifier")
    width = beams or cfg.refine.beams
    if cfg.schedule.tasks.get("item2id", 0) > 0:
        candidates, scores = _item2id_beams(rec, cfg, identifiers, records, width)
        how = "the run's item2id model"
    else:
        mapper = _text_mapper(run_dir, cfg, identifiers.codebook_sizes, dataset)
        candidates, scores = mapper.propose(embed(texts, progress=False), width)
        how = "the run's text mapper"
    codes, rank = assign_unique(
        candidates, scores, identifiers.codebook_sizes, reserved=identifiers.codes
    )
    if isinstance(rec, ItemRecModel) and rec.text_dim:  # new items' text joins the input
        vectors = rec.model.item_text.cpu().numpy()
        rec.set_item_text(np.concatenate([vectors, embed(texts, progress=False)]))
        _save_item_text(rec, run_dir / BEST / "model")
    grown = Identifiers(
        np.concatenate([identifiers.codes, codes]),
        identifiers.codebook_sizes,
        [*identifiers.item_ids, *ids],
        identifiers.prefixes,
    )
    path = grown.save(run_dir / BEST / CATALOG)
    log.info(
        "added %d items to %s with %s: %d got one of their own beams (%d their best), %d the "
        "nearest free identifier",
        len(ids),
        path,
        how,
        int((rank >= 0).sum()),
        int((rank == 0).sum()),
        int((rank < 0).sum()),
    )
    return AddedItems(grown, ids, codes, rank, path)


def _save_item_text(rec: ItemRecModel, directory: Path) -> None:
    """The model's item text vectors, written atomically beside its weights."""
    from safetensors.torch import save

    from .models.item_level import TEXT

    data = save({"item_text": rec.model.item_text.contiguous()})
    atomic_write(directory / TEXT, lambda f: f.write(data))


def _item2id_beams(
    rec: RecModel,
    cfg: TrainConfig,
    identifiers: Identifiers,
    records: list[dict[str, Any]],
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (n, width, L) and scores from the model's item2id prompt of each record."""
    tasks = TaskBuilder(
        rec, None, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    middle = tasks.text_ids(records)  # the item2id prompt's item: its words...
    empty = np.flatnonzero(~(middle >= 0).any(1))
    if len(empty):
        raise ValueError(f"new item {empty[0]} has no word the model's vocabulary knows")
    if rec.vector_tokens:  # ...or its text embedding
        rec.set_item_vectors(embed(item_texts(records), progress=False))
        middle = rec.vector_ids(np.arange(len(records)))
    candidates = np.zeros((len(records), width, identifiers.n_levels), dtype=np.int64)
    scores = np.full((len(records), width), -np.inf)
    step = cfg.eval.batch_size
    for lo in range(0, len(records), step):
        found = beam_search(rec, tasks.item2id_prompts(middle[lo : lo + step]), width)
        candidates[lo : lo + step, : found.codes.shape[1]] = found.codes
        scores[lo : lo + step, : found.scores.shape[1]] = found.scores
    return candidates, scores


def _text_mapper(
    run_dir: Path, cfg: TrainConfig, sizes: Sequence[int], dataset: Dataset | None
) -> TextMapper:
    """The run's text mapper, fitted on its trained catalogue at the first use."""
    path = run_dir / BEST / MAPPER
    if path.is_dir():
        return TextMapper.load(path)
    trained = Identifiers.load(run_dir / BEST / "index.json", sizes)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data.max_history)
    if list(data.item_ids) != list(trained.item_ids):
        raise ValueError(
            f"dataset {data.name!r} has other items than the run {run_dir} was trained on; "
            "pass the run's own dataset"
        )
    texts = item_texts(data)
    keep = np.flatnonzero([bool(t.strip()) for t in texts])
    missing = len(texts) - len(keep)
    if missing == len(texts):
        raise ValueError(
            f"{run_dir}: its dataset has no item text, so no mapper from text to identifiers "
            "can be fitted"
        )
    if missing:
        log.warning(
            "text mapper: %d of %d items have no text and are left out", missing, len(texts)
        )
    vectors = embed([texts[i] for i in keep], progress=cfg.progress)
    mapper = TextMapper.fit(vectors, trained.codes[keep], trained.codebook_sizes, seed=cfg.seed)
    mapper.save(path)
    log.info("text mapper fitted on %d items of %s, saved in %s", len(keep), run_dir, path)
    return mapper


def load(run: str | Path | None = None, device: str = "cpu", at: str = "best") -> Recommender:
    """A finished run as a `Recommender` (default: the newest run under ./runs)."""
    return Recommender.load(run, device, at)


def recommend(
    history: Sequence[str | int],
    k: int = 10,
    run: str | Path | None = None,
    device: str = "cpu",
    exclude_history: bool = True,
    indices: bool = False,
) -> list[tuple[str, float]]:
    """The top-k next items (item id, log-probability) after ONE history of item ids, oldest
    first (`1` and `"1"` are the same id; `indices=True` reads ints as 0-based indices), from
    a finished run's best model; the history's own items are left out unless
    `exclude_history=False`. For many users, load the run once with `siit.load` and call its
    `recommend` with a batch."""
    if _is_id(history):
        raise TypeError(f"history must be a list of item ids, got {history!r}")
    if any(not _is_id(h) for h in history):
        raise TypeError(
            "history must be one list of item ids; for a batch of histories use "
            "siit.load(run).recommend(histories)"
        )
    items, scores = load(run, device).recommend([history], k, exclude_history, indices=indices)
    return [(str(i), float(s)) for i, s in zip(items[0], scores[0], strict=True) if i != ""]
