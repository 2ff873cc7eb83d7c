"""Data-parallel training across processes (PyTorch ``torch.distributed``, launched by ``torchrun``).

Both shared trainers (:func:`dehazelab.train.paired.train_paired`,
:func:`dehazelab.train.unpaired.train_unpaired`) run unchanged in one process and, started by
``torchrun --nproc-per-node N ...`` (or several nodes), as N data-parallel processes; the
``train`` command (:mod:`dehazelab.launch`) is the entry point::

    torchrun --standalone --nproc-per-node 4 -m dehazelab train config/runs/aecrnet_full.yaml   # 4 GPUs

The rules (the same in both loops):

* **The configured ``batch_size`` is the global batch.** With world size W every step, every rank
  takes its contiguous W-th slice of the *same* global batch (all ranks walk the same epoch
  permutation), so W = 1 and W = 2 see the same images per step. ``batch_size`` must be divisible
  by W (:meth:`DistContext.local_batch` raises a ``ValueError`` naming both numbers).
* **Gradients are averaged over ranks** before the optimiser step (paired loop: by
  ``DistributedDataParallel``; unpaired loop: explicitly, see
  :func:`average_gradients_`), so with a loss that is a mean over the images of the batch the
  update equals the single-process update on the global batch (float rounding aside). Not equal:
  layers that use *batch statistics* in training (BatchNorm, AECR-Net's FastDeconv whitening)
  compute them over each rank's slice (no SyncBatchNorm here); losses that couple the images of a
  batch; and randomness drawn inside the step (dropout masks, CUT's patch positions, image-pool
  coin flips), which differs per rank because ranks > 0 draw from their own streams.
* **Seeding**: rank 0 keeps ``cfg.seed`` (a one-process run is bitwise unchanged); rank r > 0
  re-seeds python/numpy/torch from ``derive_seed(cfg.seed, r)`` after the networks are built (their
  weights are then overwritten by rank 0's broadcast), and from ``derive_seed(cfg.seed, r, step)``
  after resuming at ``step``.
* **Only rank 0 writes** ``config.json``, ``history.csv``, checkpoints and evaluates (on its own,
  un-wrapped model); the others wait at a :func:`barrier`. Logged losses are means over ranks. The
  run folder must be on a filesystem all ranks see (every rank reads ``last.pt`` when resuming; a
  ``last.pt`` visible to some ranks only is an error).
* **Resume** under W > 1: every rank loads ``last.pt``; its RNG state is rank 0's, ranks > 0
  re-seed as above. Bit-exact resume is guaranteed only in a single process.
* **Divergence** is decided on values that are identical on all ranks (the all-reduced loss, the
  norm of the averaged gradient), so all ranks raise :class:`~dehazelab.train.checkpoint.TrainingDiverged`
  together instead of one rank hanging in the next collective.

Backend: ``nccl`` for CUDA devices, ``gloo`` otherwise; ``DEHAZELAB_DIST_BACKEND`` overrides it.
``DEHAZELAB_DIST_TIMEOUT`` (seconds, default 1800) is the collective timeout — rank 0's evaluation
and checkpoint writes must finish within it while the others wait. On CUDA each process uses
``cuda:<LOCAL_RANK>`` (see :func:`dehazelab.repro.pick_device`).

Every helper is a no-op (and touches no RNG) when ``torch.distributed`` is not initialised or the
world has one process.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import zlib
from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = [
    "DistContext",
    "init_distributed",
    "is_active",
    "all_reduce_mean_",
    "mean_over_ranks",
    "average_gradients_",
    "broadcast_module_",
    "broadcast_optimizer_state_",
    "barrier",
    "any_rank",
    "all_ranks",
    "comm_device",
    "BACKEND_ENV",
    "TIMEOUT_ENV",
]

BACKEND_ENV = "DEHAZELAB_DIST_BACKEND"
TIMEOUT_ENV = "DEHAZELAB_DIST_TIMEOUT"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits in the (possibly one-process) world.

    ``rank`` (global, 0 … world_size-1), ``world_size``, ``local_rank`` (rank on this node: the CUDA
    device index) and ``backend`` (``None`` when not distributed).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside [0, {self.world_size})")
        if self.local_rank < 0:
            raise ValueError(f"local_rank must be >= 0, got {self.local_rank}")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files and evaluates)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "DistContext":
        """From torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (defaults: a single process).

        A process group the caller initialised already (e.g. with ``torch.multiprocessing.spawn``)
        takes precedence for rank and world size (its backend is then reported too)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            local = _env_int("LOCAL_RANK", rank)
            return cls(rank=rank, world_size=world, local_rank=local,
                       backend=str(dist.get_backend()) if world > 1 else None)
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local = _env_int("LOCAL_RANK", rank if world > 1 else 0)
        return cls(rank=rank, world_size=world, local_rank=local, backend=None)

    def local_batch(self, global_batch: int) -> int:
        """Images per rank for a global batch; a ``ValueError`` names both numbers if W does not divide it."""
        global_batch = int(global_batch)
        if global_batch % self.world_size:
            raise ValueError(f"the global batch_size={global_batch} is not divisible by the world size "
                             f"{self.world_size} (torchrun processes): every rank takes an equal slice of "
                             f"each batch; use a multiple of {self.world_size}")
        return global_batch // self.world_size


def is_active() -> bool:
    """``torch.distributed`` is initialised with more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _resolve_device(device: torch.device, ctx: DistContext) -> torch.device:
    if device.type != "cuda" or not ctx.enabled:
        return device
    if device.index is None:
        n = torch.cuda.device_count()
        if ctx.local_rank >= n:
            raise ValueError(f"LOCAL_RANK={ctx.local_rank} but only {n} CUDA device(s) are visible: "
                             "start at most one process per GPU on each node")
        return torch.device("cuda", ctx.local_rank)
    if device.index != ctx.local_rank:
        raise ValueError(f"device {device} under torchrun with LOCAL_RANK={ctx.local_rank}: every process must "
                         f"use its own GPU cuda:<LOCAL_RANK>; configure device='cuda' or 'auto'")
    return device


def init_distributed(device: torch.device | str) -> tuple[DistContext, torch.device]:
    """Initialise ``torch.distributed`` (once) when ``WORLD_SIZE`` > 1; return ``(context, device)``.

    In a single process nothing happens and ``device`` is returned unchanged. Otherwise the device
    becomes ``cuda:<LOCAL_RANK>`` for CUDA (set as the current device), the process group is
    initialised from torchrun's environment (``env://``) with backend ``nccl`` (CUDA) or ``gloo``
    (CPU) unless ``DEHAZELAB_DIST_BACKEND`` says otherwise; an already initialised group is reused
    (see :meth:`DistContext.from_env`).
    """
    import torch.distributed as dist

    device = torch.device(device)
    ctx = DistContext.from_env()
    if not ctx.enabled:
        return ctx, device
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={ctx.world_size} but this torch build has no torch.distributed")
    device = _resolve_device(device, ctx)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        backend = str(dist.get_backend())
    else:
        backend = os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
        timeout = datetime.timedelta(seconds=_env_int(TIMEOUT_ENV, 1800))
        dist.init_process_group(backend=backend, timeout=timeout)
    return dataclasses.replace(ctx, backend=backend), device


def comm_device() -> torch.device:
    """Where small bookkeeping tensors live for a collective (NCCL needs CUDA tensors)."""
    import torch.distributed as dist

    if str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """In place: the mean of ``tensor`` over ranks (sum, then divide by the world size); returned."""
    if not is_active():
        return tensor
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor.div_(dist.get_world_size())
    return tensor


def mean_over_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """The mean over ranks of each named float (one float64 all-reduce); the dict itself otherwise.

    Every rank must pass the same names (checked: a mismatch raises instead of mixing values).
    """
    values = {k: float(v) for k, v in values.items()}
    if not is_active():
        return values
    import torch.distributed as dist

    keys = list(values)
    crc = zlib.crc32("\0".join(keys).encode("utf-8"))
    dev = comm_device()
    check = torch.tensor([crc, -crc, len(keys), -len(keys)], dtype=torch.float64, device=dev)
    dist.all_reduce(check, op=dist.ReduceOp.MAX)
    if not (check[0] == crc and check[1] == -crc and check[2] == len(keys) and check[3] == -len(keys)):
        raise RuntimeError(f"ranks log different quantities (this rank: {keys}); every rank must report the same names")
    if not keys:
        return {}
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=dev)
    all_reduce_mean_(t)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def _flat_groups(tensors: Iterable[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


def _all_reduce_mean_tensors_(tensors: list[torch.Tensor]) -> None:
    """Average a list of tensors over ranks in place: one flat buffer per (device, dtype)."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    for ts in _flat_groups(tensors).values():
        flat = _flatten_dense_tensors(ts)
        all_reduce_mean_(flat)
        for t, avg in zip(ts, _unflatten_dense_tensors(flat, ts)):
            t.copy_(avg)


def average_gradients_(params: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's ``.grad`` by its mean over ranks (what ``DistributedDataParallel`` does).

    A parameter that has a gradient on *some* ranks only gets a zero gradient on the others first
    (its mean is then the sum over the ranks that have one, divided by W — what DDP with
    ``find_unused_parameters`` computes); one that has none on every rank keeps ``grad=None`` (so
    e.g. Adam skips it as in a single process). Duplicates in ``params`` are averaged once.
    Sparse gradients are not supported.
    """
    if not is_active():
        return
    import torch.distributed as dist

    seen: set[int] = set()
    plist = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            plist.append(p)
    if not plist:
        return
    has = torch.tensor([p.grad is not None for p in plist], dtype=torch.uint8, device=comm_device())
    some = has.clone()
    dist.all_reduce(some, op=dist.ReduceOp.MAX)
    grads = []
    for p, h, s in zip(plist, has.tolist(), some.tolist()):
        if not s:
            continue
        if not h:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse:
            raise ValueError("average_gradients_: sparse gradients are not supported")
        grads.append(p.grad)
    _all_reduce_mean_tensors_(grads)


def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Overwrite ``module``'s parameters and buffers with those of rank ``src`` (in place)."""
    if not is_active():
        return
    tensors = [t.data for t in (*module.parameters(), *module.buffers())]
    for ts in _flat_groups(tensors).values():
        _broadcast_list(ts, src)


def broadcast_optimizer_state_(optimizer: torch.optim.Optimizer, src: int = 0) -> None:
    """Overwrite the tensors of ``optimizer.state`` (e.g. Adam's moments and step) with rank ``src``'s.

    The state's *structure* (which parameters have state, which keys) must already agree across
    ranks — it does when every rank made the same optimiser steps.
    """
    if not is_active():
        return
    import torch.distributed as dist

    tensors = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            tensors.extend(v for _, v in sorted(st.items()) if isinstance(v, torch.Tensor))
    if not tensors:
        return
    for ts in _flat_groups(tensors).values():
        if ts[0].device.type == "cpu" and str(dist.get_backend()) == "nccl":
            moved = [t.to(comm_device()) for t in ts]
            _broadcast_list(moved, src)
            for t, m in zip(ts, moved):
                t.copy_(m)
        else:
            _broadcast_list(ts, src)


def _broadcast_list(ts: list[torch.Tensor], src: int) -> None:
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    flat = _flatten_dense_tensors(ts)
    dist.broadcast(flat, src=src)
    for t, new in zip(ts, _unflatten_dense_tensors(flat, ts)):
        t.copy_(new)


def barrier() -> None:
    """Wait until every rank gets here."""
    if not is_active():
        return
    import torch.distributed as dist

    if str(dist.get_backend()) == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _reduce_flag(flag: bool, op_name: str) -> bool:
    if not is_active():
        return bool(flag)
    import torch.distributed as dist

    t = torch.tensor([int(bool(flag))], dtype=torch.int32, device=comm_device())
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op_name))
    return bool(t.item())


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank (a collective: every rank must call it)."""
    return _reduce_flag(flag, "MAX")


def all_ranks(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (a collective: every rank must call it)."""
    return _reduce_flag(flag, "MIN")
