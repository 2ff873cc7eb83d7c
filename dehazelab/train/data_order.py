"""A deterministic, resumable order of training batches, shared by every method.

An epoch's order is ``randperm(n)`` seeded by ``(seed, epoch)`` (:class:`EpochSampler`), so a run
resumed at step ``s`` rebuilds exactly the remaining batches of its epoch; an "epoch" is
``len(train_set) // batch_size`` steps (the last incomplete batch is dropped). The official AECR-Net
script draws ``next(iter(loader))`` every step (a fresh shuffle each step); we walk through epochs
without replacement. Under ``torchrun`` every rank takes its contiguous slice of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dehazelab import distributed as ddp
from dehazelab.repro import seed_everything, seed_worker

__all__ = ["derive_seed", "reseed_rank", "EpochSampler", "epoch_loader"]


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``), e.g. ``(seed, epoch, stream)``."""
    a, b = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return ((int(a) << 32) | int(b)) & (2**63 - 1)


def reseed_rank(seed: int, rank: int, resumed_step: int | None) -> None:
    """Give rank ``rank > 0`` of a distributed run its own RNG streams (rank 0 keeps the
    single-process ones, so a 1-process run is unchanged); after a resume they also depend on the step."""
    seed_everything(derive_seed(seed, rank) if resumed_step is None else derive_seed(seed, rank, resumed_step))



class EpochSampler(Sampler[int]):
    """Indices of one epoch: ``randperm(n)`` seeded by ``(seed, epoch)``, starting at ``start``.

    Because the permutation depends only on ``(seed, epoch)``, a run resumed at step ``s`` rebuilds
    exactly the remaining batches of its epoch (``start = (s mod steps_per_epoch)·batch_size``).

    Distributed (``world_size`` > 1, ``batch_size`` = the *global* batch): the permutation is the
    same on every rank; of each complete global batch ``indices[j·B : (j+1)·B]`` rank ``r`` yields
    its contiguous slice ``[r·B/W, (r+1)·B/W)`` (an incomplete last batch is dropped), so the ranks
    together see exactly the batches of a one-process run. Load it with ``batch_size = B/W``.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, *, rank: int = 0, world_size: int = 1,
                 batch_size: int | None = None):
        if not 0 <= start <= n:
            raise ValueError(f"start={start} outside [0, {n}]")
        self.n, self.seed, self.epoch, self.start = int(n), int(seed), int(epoch), int(start)
        self.rank, self.world_size = int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.batch_size = None if batch_size is None else int(batch_size)
        if self.world_size > 1:
            if self.batch_size is None:
                raise ValueError("EpochSampler: world_size > 1 needs the global batch_size")
            self.local_batch = ddp.DistContext(0, self.world_size).local_batch(self.batch_size)

    def permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        rest = self.permutation()[self.start :]
        if self.world_size == 1:
            return iter(rest)
        b, lb = self.batch_size, self.local_batch
        out: list[int] = []
        for j in range(len(rest) // b):
            lo = j * b + self.rank * lb
            out.extend(rest[lo : lo + lb])
        return iter(out)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n - self.start
        return ((self.n - self.start) // self.batch_size) * self.local_batch


def epoch_loader(train_set: Dataset, cfg: Any, epoch: int, start_batch: int = 0, *,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """The DataLoader for ``epoch``, skipping its first ``start_batch`` batches.

    ``cfg.batch_size`` is the global batch; with ``world_size`` > 1 the loader yields rank
    ``rank``'s slices of ``cfg.batch_size / world_size`` images (see :class:`EpochSampler`).

    Calls ``train_set.set_epoch(epoch)`` when the dataset has it (``dehazelab.data.PairedDataset``
    draws its crops/flips from ``(seed, epoch, index)``, which makes resuming exact with any
    number of workers).

    The loader's own generator (seeded from ``(seed, epoch)``, and the rank for ranks > 0) only
    feeds worker base seeds; workers are initialised with :func:`dehazelab.repro.seed_worker`.
    """
    if callable(getattr(train_set, "set_epoch", None)):
        train_set.set_epoch(epoch)
    if world_size == 1:
        sampler = EpochSampler(len(train_set), cfg.seed, epoch, start_batch * cfg.batch_size)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, 1))
        local_batch = cfg.batch_size
    else:
        sampler = EpochSampler(len(train_set), cfg.seed, epoch, start_batch * cfg.batch_size, rank=rank,
                               world_size=world_size, batch_size=cfg.batch_size)
        keys = (cfg.seed, epoch, 1) if rank == 0 else (cfg.seed, epoch, 1, rank)
        gen = torch.Generator().manual_seed(derive_seed(*keys))
        local_batch = sampler.local_batch
    return DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.num_workers,
        worker_init_fn=seed_worker if cfg.num_workers > 0 else None,
        generator=gen,
        pin_memory=False,
    )
