"""The run's files written by the loop: checkpoints (everything a resumed run needs), the
best and the round's best weights, each round's identifiers and metrics.json. Mixed into
`Trainer`, whose state it reads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..models import load_model
from .diagnostics import RoundDiagnosticsMixin
from .rundir import BEST, CHECKPOINT

log = logging.getLogger("siit")


class CheckpointMixin(RoundDiagnosticsMixin):
    """Reads and writes the run directory for `Trainer` (its attributes: config, dataset,
    rec, identifiers, optimizer, state, procs, device, dir, run_dir, plan)."""

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
