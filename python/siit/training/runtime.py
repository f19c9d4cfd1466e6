"""Where a run executes: this process's place in a torchrun job, and its device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig


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


def device_for(config: TrainConfig, procs: Processes) -> torch.device:
    """The device of this process: `config.device`, with "auto" and multi-GPU runs mapped
    to this rank's GPU."""
    if config.device == "auto":
        return torch.device(f"cuda:{procs.local_rank}" if torch.cuda.is_available() else "cpu")
    if config.device == "cuda" and procs.world > 1:
        return torch.device(f"cuda:{procs.local_rank}")
    return torch.device(config.device)
