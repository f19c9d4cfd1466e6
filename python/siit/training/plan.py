"""What a run trains and validates on: the training samples (windows for decoder-only and
item-level models, prefix samples for encoder-decoder ones), the validation users, and
each epoch's batches, a function of (seed, round, epoch) alone so that a resumed run
replays them."""

from __future__ import annotations

import logging

import numpy as np

from ..config import TrainConfig
from ..data import Dataset, Samples, Windows
from ..tasks import TaskBuilder

log = logging.getLogger("siit")


class EpochPlan:
    """The samples of one run and the batches of each of its epochs."""

    def __init__(self, config: TrainConfig, dataset: Dataset, tasks: TaskBuilder, kind: str):
        self.config, self.dataset, self.tasks, self.kind = config, dataset, tasks, kind
        self.samples = self._train_samples()
        self.valid = self._valid_samples()
        self.steps = self.steps_per_epoch()

    def _train_samples(self) -> Samples | Windows:
        if self.kind in ("causal", "item"):
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

    def batches(self, round_: int, epoch: int) -> list[tuple[str, np.ndarray]]:
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
