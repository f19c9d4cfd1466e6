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

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..data import Dataset, Samples
from ..identifiers import Identifiers
from ..models import Model
from ..progress import progress_bar
from ..tasks import TaskBuilder
from .checkpoints import CheckpointMixin
from .evaluation import evaluate_samples
from .plan import EpochPlan
from .refinement import RefinementMixin
from .results import RoundResult
from .rundir import ROUND_BEST, RunDir
from .runtime import Processes

log = logging.getLogger("siit")


class Trainer(CheckpointMixin, RefinementMixin):
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
        self.plan = EpochPlan(config, dataset, self.tasks, model.kind)
        self.samples, self.valid, self.steps = self.plan.samples, self.plan.valid, self.plan.steps
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
        plan = self.plan.batches(r, e)
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

    # -- evaluation ----------------------------------------------------------------------------

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


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k)
