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
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..data import Dataset, Samples, Windows, item_texts
from ..diagnostics import (
    COLD_OCCURRENCES,
    cold_slice,
    paired_moves,
    semantic_consistency,
)
from ..embed import embed
from ..files import atomic_write
from ..identifiers import Identifiers
from ..metrics import most_popular_ranks, ranking_metrics
from ..models import Model, load_model
from ..progress import progress_bar
from ..refine import RefineReport, collaborative_proposals, refine_step, token_proposals
from ..tasks import TaskBuilder
from .evaluation import evaluate_samples, rank_samples
from .results import RoundResult
from .rundir import BEST, CHECKPOINT, ROUND_BEST, RunDir
from .runtime import Processes

log = logging.getLogger("siit")


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
        self.run_dir = RunDir(output_dir)
        self.device = model.device
        self.tasks = TaskBuilder(
            model,
            dataset,
            identifiers,
            config.network.max_text_tokens,
            config.network.max_title_tokens,
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
                {"params": decay, "weight_decay": config.schedule.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.schedule.lr,
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
            windows = self.dataset.train_windows(self.config.data.max_history + 1)
            log.info(
                "training on %d windows of up to %d items (%d targets)",
                len(windows),
                self.config.data.max_history + 1,
                int((windows.lengths() - 1).sum()),
            )
            return windows
        samples = self.dataset.train_samples()
        cap = self.config.data.samples_per_user
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
        cap = self.config.eval.valid_users
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
        return {t: p for t, p in pools.items() if self.config.schedule.tasks[t] > 0 and len(p)}

    def _task_count(self, task: str, pool: np.ndarray) -> int:
        return int(round(self.config.schedule.tasks[task] * len(pool)))

    def steps_per_epoch(self) -> int:
        b = self.config.schedule.batch_size
        return sum(-(-self._task_count(t, p) // b) for t, p in self._pools().items())

    def epoch_plan(self, round_: int, epoch: int) -> list[tuple[str, np.ndarray]]:
        """The epoch's batches: each task's samples, `weight` passes over its pool, in
        batches of one task, shuffled together; seqrec samples (windows or prefixes) are
        batched with others of similar length, so that padding costs little. Depends only on
        (seed, round, epoch)."""
        rng = np.random.default_rng([self.config.seed, round_, epoch])
        b = self.config.schedule.batch_size
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
        first = self.config.schedule.max_epochs_first_round
        if self.state["round"] == 0 and first is not None:
            return first
        return self.config.schedule.max_epochs_per_round

    def round_epochs(self) -> int:
        """The epoch (counted in the round) at which the current cycle ends at the latest."""
        return self.state.get("cycle_epoch", 0) + self.cycle_epochs()

    def lr_factor(self, step: int) -> float:
        """Learning-rate factor at a step of the cycle: linear warmup, then constant or a
        cosine decay over the cycle's epoch cap."""
        warm = max(1, self.config.schedule.warmup_steps)
        if step < warm:
            return (step + 1) / warm
        if self.config.schedule.lr_schedule == "cosine":
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
            group["lr"] = self.config.schedule.lr * self.lr_factor(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.rec.model.parameters(), self.config.schedule.grad_clip)
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
        needs_prefixes = self.config.refine.evidence != "item2id"
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
            self.config.refine.beams,
            bool(self.config.refine.keep_current),
            self.config.eval.batch_size,
            self.config.refine.levels,
            self.config.refine.contrast,
            self.config.seed + self.state["round"],
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
            self.config.refine.beams,
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
        seen = self.dataset.seen_items(samples) if self.config.eval.exclude_history else None
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
            before = Identifiers.load(self.run_dir.index(r - 1))
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
        seen = self.dataset.seen_items(self.valid) if self.config.eval.exclude_history else None
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
        if self.procs.main:
            self.run_dir.ranks(r).parent.mkdir(exist_ok=True)
            atomic_write(self.run_dir.ranks(r), lambda f: np.save(f, ranks))
        targets = self.valid.targets
        cold = cold_slice(ranks, targets, self.cold_items)
        if r == 0:
            return cold, None
        before = np.load(self.run_dir.ranks(r - 1))
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
            seen = self.dataset.seen_items(samples) if self.config.eval.exclude_history else None
            ranks = most_popular_ranks(counts, samples.targets, seen, self.config.eval.beams)
            out[split] = ranking_metrics(ranks)
        return out

    def consistency(self) -> dict[str, float] | None:
        """Semantic consistency of the current identifiers, for runs that refine."""
        config = self.config
        if not (config.refine.diagnostics and config.rounds > 0 and self.dataset.has_text):
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

            def write(folder: Path) -> None:
                self.rec.save(folder / "model")
                torch.save(
                    {
                        "optimizer": self.optimizer.state_dict(),
                        "rng": [r["torch"] for r in rng],
                        "cuda_rng": [r["cuda"] for r in rng if r["cuda"] is not None],
                    },
                    folder / "trainer.pt",
                )
                self.identifiers.save(folder / "identifiers.npz")
                (folder / "state.json").write_text(json.dumps(self.state, indent=1))

            self.run_dir.replace(CHECKPOINT, write)
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

            def write(folder: Path) -> None:
                self.rec.save(folder / "model")
                self.identifiers.save(folder / "index.json")

            self.run_dir.replace(BEST, write)
        self.procs.barrier()

    # -- the loop ----------------------------------------------------------------------------

    def _out_of_time(self) -> bool:
        limit = self.config.schedule.max_minutes_per_round
        # every rank takes rank 0's clock, so that all of them stop at the same epoch
        return limit is not None and self.procs.gather(self.state["round_seconds"])[0] >= 60 * limit

    def _cycle_done(self) -> bool:
        """The cycle ends at its epoch cap, at the round's time limit, or once `patience`
        validations of this cycle have not beaten the round's best."""
        state, config = self.state, self.config
        if state["epoch"] >= self.round_epochs() or self._out_of_time():
            return True
        curve = state["curve"]
        if config.schedule.patience is None or not curve:
            return False
        best = max(range(len(curve)), key=lambda i: (curve[i]["ndcg@10"], -i))
        since = len(curve) - 1 - max(best, state.get("cycle_curve", 0) - 1)
        return since >= config.schedule.patience

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
            self.config.schedule.cycles,
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
                    if state["epoch"] % config.eval.every == 0 or self._cycle_done():
                        self.validate()
                    state["round_seconds"] = time.perf_counter() - started
                    self.save_checkpoint()
                if state.get("cycle", 0) + 1 >= config.schedule.cycles or self._out_of_time():
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
            self.run_dir.replace(name, self.rec.save)
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
            self.identifiers.save(self.run_dir.index(r))
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
        self.run_dir.write_json("metrics.json", payload)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k)
