"""A refinement between rounds, as the loop runs it: proposals from every process (item2id
beams of token-level models, occurrence evidence of item-level ones), then the one
refinement step (`siit.refine.refine_step`) and its log lines. Mixed into `Trainer`."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..refine import RefineReport, item_proposals, refine_step, token_proposals
from .diagnostics import RoundDiagnosticsMixin

log = logging.getLogger("siit")


class RefinementMixin(RoundDiagnosticsMixin):
    """`refine()` for `Trainer` (its attributes: config, rec, tasks, samples, identifiers,
    state, procs, prefix_samples)."""

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
        found = item_proposals(
            self.rec, self.tasks, self.samples, self.identifiers, self.config, self.state["round"]
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
