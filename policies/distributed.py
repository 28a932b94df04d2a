"""Training on several processes started by torchrun: which process this is, and the collectives the loop needs.

``torchrun --nproc-per-node N -m policies.train ...`` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set. Without them (a plain ``python -m policies.train``, or ``train()`` called from
Python) a run is one process, nothing here starts a process group, and every collective below is the
identity. N processes train on the batch one process would: each draws the whole global batch b
from (seed, b) and keeps its own contiguous block of rows (``Ranks.share``); DistributedDataParallel
averages the gradients over the processes, so with the mean loss over each block the update is the
single-process one up to the order of float additions.

The processes meet in a collective at every step (the loss, and whether any of them was asked to
stop), so a Ctrl-C or SIGTERM that reaches one of them stops all of them after the same step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.distributed as dist

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(Exception):
    """torchrun's variables are inconsistent, or the run cannot be split over its processes; one line."""


class Ranks:
    """This process's place among the run's processes (a world of one unless torchrun started it)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise DistributedError(f"torchrun gave rank {rank} of world size {world_size} (local rank {local_rank})")
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self._device = torch.device("cpu")  # where the collectives' tensors live, set by joined()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Ranks:
        """The ranks torchrun set in the environment, or a world of one when it set none."""
        if not any(name in environ for name in TORCHRUN_VARIABLES):
            return cls()
        try:
            values = [int(environ[name]) for name in TORCHRUN_VARIABLES]
        except (KeyError, ValueError):
            given = ", ".join(f"{name}={environ.get(name)!r}" for name in TORCHRUN_VARIABLES)
            raise DistributedError(f"torchrun's {', '.join(TORCHRUN_VARIABLES)} must all be integers ({given})") from None
        return cls(*values)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run's files and shows its progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, batch_size: int) -> slice:
        """The rows of a global batch this process trains on: the rank-th contiguous block of batch_size / world_size."""
        if batch_size % self.world_size:
            raise DistributedError(
                f"batch size {batch_size} does not split evenly over {self.world_size} processes; give a multiple of {self.world_size}"
            )
        size = batch_size // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def device(self, device: torch.device) -> torch.device:
        """This process's device: its own GPU, cuda:LOCAL_RANK, when the run trains on cuda."""
        if not self.distributed or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"local rank {self.local_rank} needs GPU {self.local_rank}, but torch sees {torch.cuda.device_count()}")
        return torch.device("cuda", self.local_rank)

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[Ranks]:
        """Within: the process group of the run (NCCL on GPUs, gloo on CPU), through torchrun's rendezvous variables."""
        if not self.distributed:
            yield self
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.world_size)
        self._device = device
        try:
            yield self
        finally:
            dist.destroy_process_group()

    # ----------------------------------------------------------------------------------------------
    # Collectives: every process calls them in the same order; in a world of one they return their input.

    def mean(self, values: Sequence[float]) -> list[float]:
        """Each value averaged over the processes, in one collective."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def all(self, flag: bool) -> bool:
        """True on every process when it is true on all (a barrier that also carries a verdict)."""
        if not self.distributed:
            return flag
        return self.mean([float(flag)])[0] == 1
