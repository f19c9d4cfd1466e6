"""The SIIT training loop: rounds of training, refinement and validation, with checkpoints,
resumption and multi-process (torchrun / DDP) execution.

Round 0 trains on the initial identifiers; every later round first refines the identifiers
(`siit.refine`) and then trains on. Each round trains until validation NDCG@10 stops
improving (`patience` evaluations) and keeps its best weights; the best round on
validation gives the test metrics. `rounds=0` is the plain baseline on the same code path.

Decoder-only models train on windows of users' sequences with the loss on every item after
the first (`Dataset.train_windows`); encoder-decoder models on prefix samples. Either way a
batch's loss is the mean over its target tokens.

Everything a step depends on is either in the checkpoint (weights, optimizer, per-rank RNG
states, identifiers, position, the round's best weights) or derived from (seed, round,
epoch), so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .config import OBJECT, TrainConfig
from .data import Dataset, Samples, Windows, item_texts, load
from .decoding import TrieTables, top_items, use_exact
from .diagnostics import (
    COLD_OCCURRENCES,
    cold_slice,
    paired_moves,
    semantic_consistency,
    split_by_moved,
)
from .embed import embed
from .files import atomic_write
from .identifiers import Identifiers
from .metrics import beam_validity, first_hit, most_popular_ranks, ranking_metrics
from .models import Model, load_model
from .progress import progress_bar
from .refine import RefineReport, collaborative_proposals, refine_step, token_proposals
from .tasks import TaskBuilder

log = logging.getLogger("siit")

CHECKPOINT, BEST, ROUND_BEST = "checkpoint", "best", "round-best"


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def start(cls, device: str) -> Processes:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            if device.startswith("cuda"):
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), world, local_rank)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """This rank's contiguous share of range(n)."""
        return np.array_split(np.arange(n), self.world)[self.rank]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _device(config: TrainConfig, procs: Processes) -> torch.device:
    if config.device == "auto":
        return torch.device(f"cuda:{procs.local_rank}" if torch.cuda.is_available() else "cpu")
    if config.device == "cuda" and procs.world > 1:
        return torch.device(f"cuda:{procs.local_rank}")
    return torch.device(config.device)


# -- results ---------------------------------------------------------------------------------


@dataclass
class RoundResult:
    round: int
    valid: dict[str, float]  # at the round's best evaluation
    train_loss: dict[str, float]  # of the round's last epoch
    refine: dict[str, Any] | None
    seconds: float
    epochs: int = 0  # trained in this round
    best_epoch: int = 0  # whose weights the round kept (epochs count from 1)
    max_epochs: int = 0  # the round's epoch cap
    curve: list[dict[str, float]] = field(default_factory=list)  # every validation
    # semantic consistency of the round's identifiers (diagnostics, runs with rounds)
    consistency: dict[str, float] | None = None
    # codes used and entropy per level of the round's identifiers
    usage: dict[str, list] | None = None
    # validation of the round's best model on the cold-start targets (diagnostics.cold_slice)
    cold: dict[str, float] | None = None
    # the same validation targets before the refinement that opened the round and after
    # it (diagnostics.paired_moves); rounds > 0
    paired: dict[str, dict[str, float]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    """What `siit.train` returns: the best round's model and identifiers, every round's
    results, the test metrics of the best round and of the most-popular baseline on the
    same split, and where the run lies. `print(result)` gives the one-line summary."""

    model: Model
    identifiers: Identifiers  # the best round's
    rounds: list[RoundResult]
    best_round: int
    test: dict[str, float]
    output_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    most_popular: dict[str, float] = field(default_factory=dict)  # test metrics
    seconds: float = 0.0  # the whole call, tokenizer and test included

    def summary(self) -> str:
        best = self.rounds[self.best_round]
        popular = self.most_popular.get("ndcg@10")
        return (
            f"siit: done in {self.seconds / 60:.1f} min: best round {self.best_round} "
            f"(epoch {best.best_epoch}/{best.max_epochs}), valid NDCG@10 "
            f"{best.valid.get('ndcg@10', 0):.4f}, test NDCG@10 {self.test.get('ndcg@10', 0):.4f} "
            f"Recall@10 {self.test.get('recall@10', 0):.4f}"
            + (f" (most popular: {popular:.4f})" if popular is not None else "")
            + f"; run: {self.output_dir}"
        )

    def __repr__(self) -> str:
        def at10(metrics: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 4) for k, v in metrics.items() if k.endswith("@10")}

        return (
            f"TrainResult(best_round={self.best_round} of {len(self.rounds)}, "
            f"test={at10(self.test)}, most_popular={at10(self.most_popular)}, "
            f"output_dir='{self.output_dir}')"
        )

    def __str__(self) -> str:
        return self.summary()


# -- setup -----------------------------------------------------------------------------------


def load_dataset(spec: str, max_history: int) -> Dataset:
    if spec.startswith(OBJECT):
        raise ValueError(
            f"this run was trained on a Dataset object ({spec[len(OBJECT) :]!r}); pass it again, "
            "e.g. siit.train(dataset=data, resume=run_dir) or siit.evaluate(run_dir, data)"
        )
    return load(spec, max_history)


def make_tokenizer(name: str, levels: int, codebook_size: int, seed: int, **options: Any) -> Any:
    """The initial tokenizer `name` ("rqvae", "letter", "cid", "random"), or a
    `FileTokenizer` when `name` is an identifiers file; `options` go to its constructor."""
    from . import tokenizers

    if name not in ("rqvae", "letter", "cid", "random"):
        return tokenizers.FileTokenizer(name, **options)
    sized = dict(levels=levels, codebook_size=codebook_size, seed=seed)
    if name == "rqvae":
        from .tokenizers.rqvae import RQVAETokenizer

        return RQVAETokenizer(**sized, **options)
    if name == "letter":
        from .tokenizers.letter import LETTERTokenizer

        return LETTERTokenizer(**sized, **options)
    if name == "cid":
        from .tokenizers.cid import CIDTokenizer

        return CIDTokenizer(**sized, **options)
    return tokenizers.RandomTokenizer(**sized, **options)


def check_dataset(config: TrainConfig, dataset: Dataset) -> None:
    alignment = [t for t in ("item2id", "id2item") if config.tasks.get(t, 0) > 0]
    if not alignment:
        return
    fields = {"item2id": None, "id2item": "title"}
    for task in alignment:
        key = fields[task]
        has = [
            bool(t.get(key)) if key else any(bool(v) for v in t.values()) for t in dataset.item_text
        ]
        if not any(has):
            what = "titles" if key else "text"
            where = f" ({dataset.missing_text})" if dataset.missing_text else ""
            raise ValueError(
                f"bad configuration: the {task} task is on but dataset {dataset.name!r} has no "
                f"item {what}{where}; set tasks.{task} = 0 (and rounds = 0) or load item text"
            )
        missing = len(has) - sum(has)
        if missing:
            log.warning(
                "%s: %d of %d items have no %s; the %s task skips them",
                dataset.name,
                missing,
                len(has),
                key or "text",
                task,
            )


def check_fits(model: Model, identifiers: Identifiers, config: TrainConfig) -> None:
    """The identifiers must match the model's identifier tokens, and the longest prompt must
    fit the model's positions."""
    if model.kind == "item":
        limit = model.model.backbone.config.max_position_embeddings
        if tuple(identifiers.codebook_sizes) != model.codebook_sizes or config.max_history >= limit:
            raise ValueError(
                f"bad configuration: an item-level model of codebook sizes "
                f"{list(model.codebook_sizes)} and {limit} positions cannot read identifiers of "
                f"sizes {list(identifiers.codebook_sizes)} after {config.max_history} items of "
                "history (model_options.max_items)"
            )
        return
    if tuple(identifiers.codebook_sizes) != model.codebook_sizes:
        raise ValueError(
            f"bad configuration: identifiers of codebook sizes {list(identifiers.codebook_sizes)} "
            f"do not fit the model's identifier tokens {list(model.codebook_sizes)}"
        )
    limit = getattr(model.model.config, "max_position_embeddings", None)
    longest = (config.max_history + 1) * identifiers.n_levels + 64
    if limit is not None and longest > limit:
        raise ValueError(
            f"bad configuration: a history of {config.max_history} items x "
            f"{identifiers.n_levels} tokens needs about {longest} positions, the model has {limit}"
        )


# -- the run ---------------------------------------------------------------------------------


class Trainer:
    """One run in `output_dir`. Use `siit.train`; this class holds the loop's state."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset,
        identifiers: Identifiers,
        model: Model,
        output_dir: Path,
        procs: Processes,
    ) -> None:
        self.config, self.dataset, self.identifiers, self.rec = config, dataset, identifiers, model
        self.dir, self.procs = output_dir, procs
        self.device = model.device
        self.tasks = TaskBuilder(
            model, dataset, identifiers, config.max_text_tokens, config.max_title_tokens
        )
        self.samples = self._train_samples()
        self.valid = self._valid_samples()
        self.steps = self.steps_per_epoch()
        self.net: Any = model.model
        if procs.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # batches without item2id prompts leave the item vector projection unused
            # item text vectors are a buffer every rank holds already: no broadcast per step
            self.net = torch.nn.parallel.DistributedDataParallel(
                model.model,
                device_ids=ids,
                find_unused_parameters=bool(model.vector_tokens),
                broadcast_buffers=model.kind != "item",
            )
        decay = [p for n, p in model.model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in model.model.named_parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        self.state: dict[str, Any] = dict(
            round=0,
            epoch=0,
            step=0,
            refined=False,
            best_round=-1,
            best_score=-1.0,
            rounds=[],
            losses={},
            curve=[],  # this round's validations
        )
        self._moved: tuple[int, np.ndarray] | None = None
        self._embeddings: np.ndarray | None = None

    # -- samples -----------------------------------------------------------------------------

    def _train_samples(self) -> Samples | Windows:
        if self.rec.kind in ("causal", "item"):
            windows = self.dataset.train_windows(self.config.max_history + 1)
            log.info(
                "training on %d windows of up to %d items (%d targets)",
                len(windows),
                self.config.max_history + 1,
                int((windows.lengths() - 1).sum()),
            )
            return windows
        samples = self.dataset.train_samples()
        cap = self.config.samples_per_user
        if cap is None:
            log.info("training on %d prefix samples", len(samples))
            return samples
        # rank of each sample from its user's end: samples are grouped by user in order
        users = samples.users
        last = np.r_[users[1:] != users[:-1], True]
        end = np.flatnonzero(last)
        group_end = np.repeat(end, np.diff(np.r_[-1, end]))
        keep = group_end - np.arange(len(users)) < cap
        log.info(
            "training on %d of %d samples: the last %d prefixes of each user (samples_per_user)",
            int(keep.sum()),
            len(users),
            cap,
        )
        return samples.subset(keep)

    def _valid_samples(self) -> Samples:
        samples = self.dataset.valid_samples()
        cap = self.config.valid_users
        if cap is None or cap >= len(samples):
            return samples
        rows = np.sort(
            np.random.default_rng(self.config.seed).choice(len(samples), cap, replace=False)
        )
        log.info("validating on %d of %d users (valid_users)", cap, len(samples))
        return samples.subset(rows)

    def _pools(self) -> dict[str, np.ndarray]:
        pools = {"seqrec": np.arange(len(self.samples))}
        for task in ("item2id", "id2item"):
            pools[task] = self.tasks.alignment_items(task)
        return {t: p for t, p in pools.items() if self.config.tasks[t] > 0 and len(p)}

    def _task_count(self, task: str, pool: np.ndarray) -> int:
        return int(round(self.config.tasks[task] * len(pool)))

    def steps_per_epoch(self) -> int:
        b = self.config.batch_size
        return sum(-(-self._task_count(t, p) // b) for t, p in self._pools().items())

    def epoch_plan(self, round_: int, epoch: int) -> list[tuple[str, np.ndarray]]:
        """The epoch's batches: each task's samples, `weight` passes over its pool, in
        batches of one task, shuffled together; seqrec samples (windows or prefixes) are
        batched with others of similar length, so that padding costs little. Depends only on
        (seed, round, epoch)."""
        rng = np.random.default_rng([self.config.seed, round_, epoch])
        b = self.config.batch_size
        batches = []
        for task, pool in self._pools().items():
            count = self._task_count(task, pool)
            passes = [rng.permutation(pool) for _ in range(-(-count // len(pool)))]
            picks = np.concatenate(passes)[:count]
            if task == "seqrec":
                picks = picks[np.argsort(-self.samples.lengths()[picks], kind="stable")]
            batches += [(task, picks[i : i + b]) for i in range(0, count, b)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    # -- training ----------------------------------------------------------------------------

    def cycle_epochs(self) -> int:
        """The epoch cap of each training cycle of the current round:
        `max_epochs_first_round` for round 0 when set."""
        first = self.config.max_epochs_first_round
        if self.state["round"] == 0 and first is not None:
            return first
        return self.config.max_epochs_per_round

    def round_epochs(self) -> int:
        """The epoch (counted in the round) at which the current cycle ends at the latest."""
        return self.state.get("cycle_epoch", 0) + self.cycle_epochs()

    def lr_factor(self, step: int) -> float:
        """Learning-rate factor at a step of the cycle: linear warmup, then constant or a
        cosine decay over the cycle's epoch cap."""
        warm = max(1, self.config.warmup_steps)
        if step < warm:
            return (step + 1) / warm
        if self.config.lr_schedule == "cosine":
            total = self.steps * self.cycle_epochs()
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return 1.0

    def train_step(self, task: str, rows: np.ndarray) -> float:
        """One optimizer step on a global batch: the mean loss over its target tokens. Each
        rank takes its contiguous share and divides its summed loss by the global token
        count (times the ranks, which DDP's gradient average divides out again)."""
        local = np.array_split(rows, self.procs.world)[self.procs.rank]
        share = 1.0
        if len(local) == 0:  # fewer samples than ranks: take part with a zero weight
            local, share = rows[:1], 0.0
        prompt, target = self.tasks.batch(task, local, self.samples)
        losses = self.rec.token_losses(self.net, prompt, target)
        tokens = torch.tensor(float((target >= 0).sum()) * share, device=losses.device)
        if self.procs.world > 1:
            dist.all_reduce(tokens)
        loss = losses.sum() * (share * self.procs.world / tokens)
        epoch = self.state["epoch"] - self.state.get("cycle_epoch", 0)
        step = epoch * self.steps + self.state["step"]
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * self.lr_factor(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.rec.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        total = losses.detach().sum() * share
        if self.procs.world > 1:
            dist.all_reduce(total)
        return float(total / tokens)

    def run_epoch(self) -> None:
        r, e = self.state["round"], self.state["epoch"]
        plan = self.epoch_plan(r, e)
        sums: dict[str, list[float]] = {}
        bar = progress_bar(
            total=len(plan),
            initial=self.state["step"],
            desc=f"round {r} epoch {e + 1}/{self.round_epochs()}",
            enabled=self.config.progress and self.procs.main,
        )
        self.rec.model.train()
        try:
            for i in range(self.state["step"], len(plan)):
                task, rows = plan[i]
                loss = self.train_step(task, rows)
                sums.setdefault(task, []).append(loss)
                self.state["step"] = i + 1
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        except KeyboardInterrupt:
            log.warning(
                "interrupted at round %d epoch %d step %d: writing a checkpoint",
                r,
                e,
                self.state["step"],
            )
            self.save_checkpoint()
            log.warning("resume with: siit train --resume %s", self.dir)
            raise
        finally:
            bar.close()
        losses = {t: float(np.mean(v)) for t, v in sums.items()}
        self.state["losses"] = {t: losses.get(t, float("nan")) for t in sums}
        log.info(
            "round %d epoch %d/%d: loss %s",
            r,
            e + 1,
            self.round_epochs(),
            ", ".join(f"{t} {v:.4f}" for t, v in losses.items()),
        )
        self.state["epoch"] += 1
        self.state["step"] = 0

    # -- refinement and evaluation -----------------------------------------------------------

    def _item2id_proposals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token-level models: each process proposes for its share of the items."""
        items = self.tasks.alignment_items("item2id")
        mine = items[self.procs.shard(len(items))]
        needs_prefixes = self.config.refine_evidence != "item2id"
        cand, scores = token_proposals(
            self.rec,
            self.tasks,
            mine,
            self.identifiers,
            self.config,
            self.prefix_samples if needs_prefixes else None,
            self.state["round"],
            progress=self.config.progress and self.procs.main,
        )
        parts = self.procs.gather((cand, scores))
        return (
            items,
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )

    def _collaborative_proposals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item-level models: beams on the summed evidence of each item's training
        occurrences; rank 0's proposal is everyone's, so all processes assign alike."""
        found = collaborative_proposals(
            self.rec,
            self.tasks,
            self.samples,
            self.identifiers,
            self.config.refine_beams,
            bool(self.config.keep_current),
            self.config.eval_batch_size,
            self.config.refine_levels,
        )
        return self.procs.gather(found)[0]

    def refine(self) -> RefineReport:
        start = time.perf_counter()
        items, cand, scores = (
            self._collaborative_proposals()
            if self.rec.kind == "item"
            else self._item2id_proposals()
        )
        new, report = refine_step(
            self.identifiers, items, cand, scores, self.config, time.perf_counter() - start
        )
        regen = report.regeneration
        self.identifiers = new
        self.tasks.set_identifiers(new)
        log.info(
            "round %d: before refinement, %s regenerates %.1f%% of the identifiers as its "
            "best beam, %.1f%% among its %d beams (best beam's prefix per level %s)",
            self.state["round"],
            "the occurrence evidence" if self.rec.kind == "item" else "item2id",
            100 * regen["top1"],
            100 * regen["topk"],
            self.config.refine_beams,
            regen["top1_prefix"],
        )
        log.info(
            "round %d refinement: %d items changed identifier, %d kept theirs, %d took their best "
            "beam, %d fell back, %d without evidence kept theirs; codes used per level %s, "
            "entropy %s bits (%.1f s, %.0f items/s)",
            self.state["round"],
            report.changed,
            report.kept,
            report.rank0,
            report.fallback,
            report.frozen,
            list(report.codes_used),
            list(report.entropy_bits),
            report.seconds,
            len(items) / max(report.seconds, 1e-9),
        )
        return report

    def evaluate(self, samples: Samples, desc: str) -> dict[str, float]:
        seen = self.dataset.seen_items(samples) if self.config.exclude_history else None
        return evaluate_samples(
            self.rec,
            self.tasks,
            self.identifiers,
            samples,
            self.config,
            self.procs,
            desc,
            seen,
            moved=self.moved(),
        )

    @cached_property
    def prefix_samples(self) -> Samples:
        """Every training prefix as a sample, whatever layout the model trains on: where
        refinement looks for an item's collaborative evidence."""
        return self.dataset.train_samples()

    def moved(self) -> np.ndarray | None:
        """Per item, whether the refinement that opened this round changed its identifier
        (None in round 0): read back from the previous round's index, so a resumed run
        knows it too."""
        r = self.state["round"]
        if r == 0:
            return None
        if self._moved is None or self._moved[0] != r:
            before = Identifiers.load(self.dir / "index" / f"round-{r - 1}.index.json")
            self._moved = (r, (before.codes != self.identifiers.codes).any(1))
        return self._moved[1]

    @cached_property
    def cold_items(self) -> np.ndarray:
        """Per item, whether it is a training target at most COLD_OCCURRENCES times."""
        counts = np.bincount(self.prefix_samples.targets, minlength=self.identifiers.n_items)
        return counts <= COLD_OCCURRENCES

    def target_diagnostics(self) -> tuple[dict[str, float], dict | None]:
        """The round's best model on the validation targets: the cold-start slice, and the
        paired comparison with the previous round's best model on the same targets (its
        ranks are kept in the run directory, so a resumed run has them too)."""
        r = self.state["round"]
        seen = self.dataset.seen_items(self.valid) if self.config.exclude_history else None
        ranks, _, _ = rank_samples(
            self.rec,
            self.tasks,
            self.identifiers,
            self.valid,
            self.config,
            self.procs,
            f"targets round {r}",
            seen,
        )
        folder = self.dir / "diagnostics"
        if self.procs.main:
            folder.mkdir(exist_ok=True)
            atomic_write(folder / f"valid-ranks-round-{r}.npy", lambda f: np.save(f, ranks))
        targets = self.valid.targets
        cold = cold_slice(ranks, targets, self.cold_items)
        if r == 0:
            return cold, None
        before = np.load(folder / f"valid-ranks-round-{r - 1}.npy")
        paired = paired_moves(before, ranks, targets, self.moved(), self.cold_items)
        log.info(
            "round %d, same validation targets before -> after the refinement: NDCG@10 of "
            "moved items %.4f -> %.4f (%d targets), kept %.4f -> %.4f, cold %.4f -> %.4f",
            r,
            paired["moved"]["ndcg@10_before"],
            paired["moved"]["ndcg@10_after"],
            paired["moved"]["n"],
            paired["kept"]["ndcg@10_before"],
            paired["kept"]["ndcg@10_after"],
            paired["cold"]["ndcg@10_before"],
            paired["cold"]["ndcg@10_after"],
        )
        return cold, paired

    def usage(self) -> dict[str, list]:
        """Codes used and their entropy per level of the current identifiers."""
        stats = self.identifiers.stats()
        return {
            "codebook_sizes": list(self.identifiers.codebook_sizes),
            "codes_used": list(stats.codes_used),
            "entropy_bits": [round(e, 4) for e in stats.entropy_bits],
        }

    @cached_property
    def most_popular(self) -> dict[str, dict[str, float]]:
        """The most-popular baseline on this run's split (validation users as validated,
        all test users), with the run's exclude_history: whether the model learned anything."""
        _, positions = self.dataset.train_positions()
        counts = np.bincount(self.dataset.items[positions], minlength=self.dataset.n_items)
        out = {}
        for split, samples in (("valid", self.valid), ("test", self.dataset.test_samples())):
            seen = self.dataset.seen_items(samples) if self.config.exclude_history else None
            ranks = most_popular_ranks(counts, samples.targets, seen, self.config.beams)
            out[split] = ranking_metrics(ranks)
        return out

    def consistency(self) -> dict[str, float] | None:
        """Semantic consistency of the current identifiers, for runs that refine."""
        config = self.config
        if not (config.diagnostics and config.rounds > 0 and self.dataset.has_text):
            return None
        if self._embeddings is None:
            texts = item_texts(self.dataset.item_text)
            self._embeddings = embed(texts, progress=config.progress and self.procs.main)
        return semantic_consistency(self.identifiers.codes, self._embeddings)

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Model, optimizer, every rank's RNG state, identifiers and position (the learning
        rate follows from it), written to a temporary directory and swapped in by rename."""
        rng = self.procs.gather(
            {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda"
                else None,
            }
        )
        if self.procs.main:
            tmp = self.dir / f"{CHECKPOINT}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.rec.save(tmp / "model")
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "rng": [r["torch"] for r in rng],
                    "cuda_rng": [r["cuda"] for r in rng if r["cuda"] is not None],
                },
                tmp / "trainer.pt",
            )
            self.identifiers.save(tmp / "identifiers.npz")
            (tmp / "state.json").write_text(json.dumps(self.state, indent=1))
            final, old = self.dir / CHECKPOINT, self.dir / f"{CHECKPOINT}.old"
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        self.procs.barrier()

    def load_checkpoint(self, directory: Path) -> None:
        saved = torch.load(directory / "trainer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        if len(saved["rng"]) != self.procs.world:
            log.warning(
                "checkpoint has RNG states of %d processes, this run has %d: dropout "
                "will not replay exactly",
                len(saved["rng"]),
                self.procs.world,
            )
        torch.set_rng_state(saved["rng"][min(self.procs.rank, len(saved["rng"]) - 1)])
        if self.device.type == "cuda" and saved["cuda_rng"]:
            torch.cuda.set_rng_state(
                saved["cuda_rng"][min(self.procs.rank, len(saved["cuda_rng"]) - 1)], self.device
            )
        self.state = json.loads((directory / "state.json").read_text())

    def save_best(self) -> None:
        if self.procs.main:
            tmp = self.dir / f"{BEST}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.rec.save(tmp / "model")
            self.identifiers.save(tmp / "index.json")
            shutil.rmtree(self.dir / BEST, ignore_errors=True)
            tmp.rename(self.dir / BEST)
        self.procs.barrier()

    # -- the loop ----------------------------------------------------------------------------

    def _out_of_time(self) -> bool:
        limit = self.config.max_minutes_per_round
        # every rank takes rank 0's clock, so that all of them stop at the same epoch
        return limit is not None and self.procs.gather(self.state["round_seconds"])[0] >= 60 * limit

    def _cycle_done(self) -> bool:
        """The cycle ends at its epoch cap, at the round's time limit, or once `patience`
        validations of this cycle have not beaten the round's best."""
        state, config = self.state, self.config
        if state["epoch"] >= self.round_epochs() or self._out_of_time():
            return True
        curve = state["curve"]
        if config.patience is None or not curve:
            return False
        best = max(range(len(curve)), key=lambda i: (curve[i]["ndcg@10"], -i))
        since = len(curve) - 1 - max(best, state.get("cycle_curve", 0) - 1)
        return since >= config.patience

    def _next_cycle(self) -> None:
        """Restart from the round's best weights with a fresh optimizer, warmup and
        schedule: a second descent often finds better weights than the first."""
        state = self.state
        self._load_model(ROUND_BEST)
        self.optimizer.state.clear()
        state.update(
            cycle=state.get("cycle", 0) + 1,
            cycle_epoch=state["epoch"],
            cycle_curve=len(state["curve"]),
        )
        log.info(
            "round %d: cycle %d of %d starts at epoch %d from the round's best weights",
            state["round"],
            state["cycle"] + 1,
            self.config.cycles,
            state["epoch"] + 1,
        )

    def validate(self) -> None:
        """Validation of the current weights; the round keeps them when they are its best
        (strictly better NDCG@10 than any earlier evaluation of the round)."""
        state = self.state
        start = time.perf_counter()
        valid = self.evaluate(self.valid, f"valid round {state['round']} epoch {state['epoch']}")
        seconds = time.perf_counter() - start
        point = {
            "epoch": state["epoch"],
            **valid,
            **{f"loss_{t}": v for t, v in state["losses"].items()},
            "eval_seconds": round(seconds, 2),
        }
        improved = all(valid["ndcg@10"] > c["ndcg@10"] for c in state["curve"])
        state["curve"].append(point)
        if improved:
            self._save_model(ROUND_BEST)
        log.info(
            "round %d epoch %d/%d validation: %s%s (%d users, %.0f users/s, %d threads)",
            state["round"],
            state["epoch"],
            self.round_epochs(),
            _fmt(valid),
            " (best of the round)" if improved else "",
            len(self.valid),
            len(self.valid) / max(seconds, 1e-9),
            torch.get_num_threads(),
        )

    def fit(self) -> None:
        config, state = self.config, self.state
        while state["round"] <= config.rounds:
            r = state["round"]
            started = time.perf_counter() - state.get("round_seconds", 0.0)
            if r > 0 and not state["refined"]:
                report = self.refine()
                state["refined"] = True
                state["refine"] = report.as_dict()
                self.write_index(r)
                self.save_checkpoint()
            elif r == 0 and state["epoch"] == 0 and state["step"] == 0:
                self.write_index(0)
            state.setdefault("round_seconds", 0.0)
            while True:
                while not self._cycle_done():
                    self.run_epoch()
                    state["round_seconds"] = time.perf_counter() - started
                    if state["epoch"] % config.eval_every == 0 or self._cycle_done():
                        self.validate()
                    state["round_seconds"] = time.perf_counter() - started
                    self.save_checkpoint()
                if state.get("cycle", 0) + 1 >= config.cycles or self._out_of_time():
                    break
                self._next_cycle()
                self.save_checkpoint()
            # the round continues from its best weights
            self._load_model(ROUND_BEST)
            cold, paired = self.target_diagnostics()
            curve = state["curve"]
            best = max(curve, key=lambda c: c["ndcg@10"])
            valid = {k: v for k, v in best.items() if "@" in k or k.endswith("_share")}
            result = RoundResult(
                r,
                valid,
                dict(state["losses"]),
                state.get("refine") if r > 0 else None,
                round(time.perf_counter() - started, 1),
                epochs=state["epoch"],
                best_epoch=int(best["epoch"]),
                max_epochs=self.round_epochs(),
                curve=curve,
                consistency=state.get("consistency"),
                usage=self.usage(),
                cold=cold,
                paired=paired,
            )
            log.info(
                "round %d: best validation at epoch %d/%d (%d trained): %s",
                r,
                result.best_epoch,
                result.max_epochs,
                result.epochs,
                _fmt(valid),
            )
            state["rounds"].append(result.as_dict())
            if valid["ndcg@10"] > state["best_score"]:
                state["best_round"], state["best_score"] = r, valid["ndcg@10"]
                self.save_best()
            state.update(
                round=r + 1,
                epoch=0,
                step=0,
                refined=False,
                refine=None,
                curve=[],
                round_seconds=0.0,
                cycle=0,
                cycle_epoch=0,
                cycle_curve=0,
            )
            self.save_checkpoint()
            self.write_metrics()

    def _save_model(self, name: str) -> None:
        """The current weights under `name`, replaced atomically."""
        if self.procs.main:
            tmp = self.dir / f"{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.rec.save(tmp)
            shutil.rmtree(self.dir / name, ignore_errors=True)
            tmp.rename(self.dir / name)
        self.procs.barrier()

    def _load_model(self, name: str) -> None:
        saved = load_model(self.dir / name, self.device)
        with torch.no_grad():
            for mine, theirs in zip(
                self.rec.model.parameters(), saved.model.parameters(), strict=True
            ):
                mine.copy_(theirs.to(mine.dtype))

    def write_index(self, r: int) -> None:
        """The round's identifiers, and their semantic consistency in the state."""
        if self.procs.main:
            self.identifiers.save(self.dir / "index" / f"round-{r}.index.json")
            self.state["consistency"] = self.consistency()
            if self.state["consistency"]:
                log.info(
                    "round %d identifiers: mean text cosine of items sharing 1, 2 codes %s "
                    "(all pairs %s)",
                    r,
                    [self.state["consistency"][f"prefix{d}"] for d in (1, 2)],
                    self.state["consistency"]["all"],
                )

    def write_metrics(self, test: dict[str, float] | None = None) -> None:
        if not self.procs.main:
            return
        payload = {
            "config": self.config.to_dict(),
            "dataset": {
                "name": self.dataset.name,
                "users": self.dataset.n_users,
                "items": self.dataset.n_items,
                "interactions": self.dataset.n_interactions,
                "train_samples": len(self.samples),
                "valid_users": len(self.valid),
            },
            "processes": self.procs.world,
            "most_popular": self.most_popular,
            "rounds": self.state["rounds"],
            "best_round": self.state["best_round"],
            "test": test,
        }
        _write_json(self.dir / "metrics.json", payload)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k)


def _write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=1, default=float)
    atomic_write(path, lambda f: f.write(text.encode()))


@torch.no_grad()
def rank_samples(
    rec: Model,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    samples: Samples,
    config: TrainConfig,
    procs: Processes | None = None,
    desc: str = "evaluate",
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """First-hit rank of every sample's target in its top `config.beams` (-1: missed; rows
    sharded over processes, ranks gathered in order), and the shares of invalid and of
    repeated beams. `seen` (N, S): items per sample that may not be recommended."""
    procs = procs or Processes()
    rows = procs.shard(len(samples))
    exact = use_exact(config.eval_mode, rec, identifiers.n_items)
    tables = TrieTables.of(identifiers, rec.device)
    bs = config.eval_batch_size
    ranks, invalid, repeated = [], 0.0, 0.0
    for lo in progress_bar(
        range(0, len(rows), bs), desc=desc, enabled=config.progress and procs.main
    ):
        part = rows[lo : lo + bs]
        prompt, _ = tasks.seqrec(samples.histories[part])
        exclude = None if seen is None else seen[part]
        items, _ = top_items(rec, prompt, config.beams, tables, identifiers, exact, exclude)
        bad, rep = beam_validity(items)
        invalid += bad * items.size
        repeated += rep * items.size
        ranks.append(first_hit(items, samples.targets[part]))
    gathered = procs.gather(
        (np.concatenate(ranks) if ranks else np.zeros(0, np.int64), invalid, repeated)
    )
    all_ranks = np.concatenate([g[0] for g in gathered])
    total = max(1, len(all_ranks) * config.beams)
    return (
        all_ranks,
        sum(g[1] for g in gathered) / total,
        sum(g[2] for g in gathered) / total,
    )


def evaluate_samples(
    rec: Model,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    samples: Samples,
    config: TrainConfig,
    procs: Processes | None = None,
    desc: str = "evaluate",
    seen: np.ndarray | None = None,
    moved: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of samples (see `rank_samples`); with `moved` (a per-item mask),
    also the metrics of samples whose target moved and kept."""
    all_ranks, invalid, repeated = rank_samples(
        rec, tasks, identifiers, samples, config, procs, desc, seen
    )
    out = ranking_metrics(all_ranks)
    out["invalid_share"], out["duplicate_share"] = invalid, repeated
    if moved is not None:
        out.update(split_by_moved(all_ranks, samples.targets, moved))
    if (out["invalid_share"] or out["duplicate_share"]) and identifiers.n_items >= config.beams:
        log.error(
            "%s: %.4f of beams invalid, %.4f duplicate",
            desc,
            out["invalid_share"],
            out["duplicate_share"],
        )
    return out
