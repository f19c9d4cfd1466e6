"""What the loop measures besides validation: the paired before/after comparison of a
refinement on the same validation targets, the cold-start slice, codes used, the
most-popular baseline and the identifiers' semantic consistency. Mixed into `Trainer`."""

from __future__ import annotations

import logging
from functools import cached_property

import numpy as np

from ..data import Samples, item_texts
from ..diagnostics import COLD_OCCURRENCES, cold_slice, paired_moves, semantic_consistency
from ..embed import embed
from ..files import atomic_write
from ..identifiers import Identifiers
from ..metrics import most_popular_ranks, ranking_metrics
from .evaluation import rank_samples
from .parts import TrainerParts

log = logging.getLogger("siit")


class RoundDiagnosticsMixin(TrainerParts):
    """Diagnostics of a round for `Trainer` (its attributes: config, dataset, rec, tasks,
    identifiers, state, procs, run_dir, valid)."""

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
