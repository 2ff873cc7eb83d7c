"""Seeds, thread counts and device choice: every run calls :func:`seed_everything` first."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, threads: int | None = None, deterministic: bool = True):
    """Seed python, numpy and torch; fix the torch thread count; return a seeded ``torch.Generator``.

    CPU results are bitwise repeatable only at a fixed thread count, so ``threads`` is part of every
    recorded config. ``deterministic`` turns on ``torch.use_deterministic_algorithms`` (warn-only, so
    an op without a deterministic kernel warns instead of failing a long run).
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads is not None:
        torch.set_num_threads(int(threads))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def seed_worker(worker_id: int) -> None:  # pragma: no cover - used by DataLoader workers
    import torch

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def check_device(prefer: str = "auto"):
    """:func:`pick_device`, then make sure the device exists here: a ``ValueError`` naming the
    problem (an unknown device type, CUDA asked for on a machine without a usable GPU, an index past
    the GPUs present) instead of a failure deep inside the first ``.to(device)``."""
    import torch

    try:
        dev = pick_device(prefer)
    except RuntimeError as e:
        raise ValueError(f"{prefer!r} is not a device torch knows (use auto, cpu, cuda or cuda:N): "
                         f"{str(e).splitlines()[0]}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{prefer!r}: no CUDA GPU is available on this machine (use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{prefer!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"{prefer!r}: MPS is not available on this machine (use auto or cpu)")
    elif dev.type != "cpu":
        raise ValueError(f"{prefer!r}: device type {dev.type!r} is not supported here (use auto, cpu or cuda)")
    return dev


def pick_device(prefer: str = "auto"):
    """``"auto"`` picks CUDA when present, else CPU; never requires a GPU.

    Under ``torchrun`` with more than one process (``WORLD_SIZE`` > 1), ``"auto"`` / ``"cuda"``
    (no index) give ``cuda:<LOCAL_RANK>``, so every process of a node uses its own GPU.
    """
    import torch

    if prefer == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(prefer)
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return dev
