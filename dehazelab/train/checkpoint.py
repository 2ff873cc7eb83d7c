"""Training state on disk, shared by the paired and the unpaired loops.

What lives here (nothing in this file knows about a particular model, loss or dataset):

* **Checkpoints** that hold only tensors and plain python values, so they load with
  ``torch.load(path, weights_only=True)`` — no pickled classes, no code execution on load.
  :func:`make_checkpoint` assembles one, :func:`save_checkpoint` checks and writes it atomically,
  :func:`load_checkpoint` reads it (always ``weights_only=True``) and names the file in every error.
* **RNG state** capture/restore for python ``random``, numpy's global generator, torch CPU and CUDA
  (:func:`capture_rng_state`, :func:`restore_rng_state`) — the part of a checkpoint that makes a
  resumed run bitwise equal to an uninterrupted one.
* **Model spec**: ``{"model": name, "kwargs": {...}}`` stored next to the weights, so a checkpoint
  alone rebuilds its network from a registry dict (:func:`model_from_checkpoint`).
* **Divergence guard**: :class:`TrainingDiverged` and :func:`nonfinite` checks.

The run folder's files (``last.pt``, ``best.pt``, snapshots; :class:`~dehazelab.train.folder.CheckpointDir`)
and the history CSV (:class:`~dehazelab.train.history.HistoryLog`) have modules of their own.

The official AECR-Net script pickles whole python lists (losses, psnrs) into its checkpoint and
loads with the (then default) full unpickler; we keep the history in a CSV instead and never unpickle
arbitrary objects.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dehazelab.divergence import TrainingDiverged  # re-exported: the loops raise it
from dehazelab.io import save_torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainingDiverged",
    "capture_rng_state",
    "restore_rng_state",
    "to_plain",
    "check_plain",
    "unwrap_model",
    "make_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_weights_only",
    "validate_model_spec",
    "build_model",
    "model_from_checkpoint",
    "nonfinite",
]

CHECKPOINT_FORMAT = "dehazelab.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not a dehazelab checkpoint."""


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Snapshot the global RNGs as tensors and plain python values.

    * ``torch``: ``torch.get_rng_state()`` (a uint8 tensor);
    * ``cuda``: ``torch.cuda.get_rng_state_all()`` when CUDA is available (list of tensors);
    * ``numpy``: the legacy global ``np.random`` MT19937 state, keys as an int64 tensor;
    * ``python``: ``random.getstate()`` as ``{"version", "state": list[int], "gauss_next"}``.

    Generators created explicitly (``np.random.default_rng``, ``torch.Generator``) are not global
    and not captured.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pstate, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": [int(x) for x in pstate],
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA state is restored only if CUDA is available
    and the device count matches (a GPU checkpoint resumed on CPU keeps going, not bit-exact)."""
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    npst = state["numpy"]
    keys = np.asarray(torch.as_tensor(npst["keys"]).cpu().numpy(), dtype=np.uint32)
    np.random.set_state((npst["kind"], keys, int(npst["pos"]), int(npst["has_gauss"]), float(npst["cached_gaussian"])))
    pst = state["python"]
    random.setstate((int(pst["version"]), tuple(int(x) for x in pst["state"]), pst["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])


# --------------------------------------------------------------------------------------------
# plain-type discipline
# --------------------------------------------------------------------------------------------
_PRIMITIVES = (bool, int, float, str, bytes, type(None))


def to_plain(obj: Any, where: str = "value") -> Any:
    """Convert ``obj`` to tensors + plain python containers/primitives, or raise ``TypeError``.

    numpy scalars → python numbers, numpy arrays → tensors, ``Path`` → ``str``, sets → sorted
    lists; dict keys must be str/int. Used for model kwargs, configs and extra state.
    """
    if isinstance(obj, torch.Tensor) or type(obj) in _PRIMITIVES:
        return obj
    if isinstance(obj, np.generic):  # before the subclass checks: np.float64 is a float
        return obj.item()
    for base in (bool, int, float, str, bytes):  # subclasses (IntEnum, TorchVersion) → the base
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} is not a str/int")
            out[k] = to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        seq = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return seq if isinstance(obj, list) else tuple(seq)
    if isinstance(obj, (set, frozenset)):
        return sorted((to_plain(v, where) for v in obj), key=repr)
    raise TypeError(
        f"{where}: {type(obj).__module__}.{type(obj).__qualname__} is not a tensor or plain python "
        "value; checkpoints must load with torch.load(weights_only=True)"
    )


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise ``TypeError`` naming the first value that ``weights_only`` loading would reject.

    Unlike :func:`to_plain` this does not rebuild containers, so a model ``state_dict`` keeps its
    ``_metadata`` (module versions) intact.
    """
    if isinstance(obj, torch.Tensor) or type(obj) in _PRIMITIVES:  # exact types: a str subclass
        return                                                      # (TorchVersion) would not load
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} ({type(k).__name__}) is not a str/int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: {type(obj).__module__}.{type(obj).__qualname__} would not load with "
        "torch.load(weights_only=True); convert it to tensors/plain python first"
    )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` (or the model itself)."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def validate_model_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check and normalise ``{"model": str, "kwargs": {...}}`` (kwargs made plain)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) - {"model", "kwargs"} or "model" not in spec:
        raise ValueError(f"model_spec must be {{'model': name, 'kwargs': {{...}}}}, got {spec!r}")
    if not isinstance(spec["model"], str) or not spec["model"]:
        raise ValueError(f"model_spec['model'] must be a non-empty string, got {spec['model']!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"model_spec['kwargs'] must be a dict, got {type(kwargs).__name__}")
    return {"model": spec["model"], "kwargs": to_plain(dict(kwargs), "model_spec['kwargs']")}


def make_checkpoint(
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    best: Mapping[str, Any] | None = None,
    model_spec: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    rng: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (tensors + plain python only).

    Keys: ``format``, ``step``, ``model`` (state_dict of the unwrapped model), ``optimizer``,
    ``scheduler``, ``best`` (e.g. ``{"metric": "psnr", "value": 27.1, "step": 3000}``),
    ``model_spec``, ``config``, ``rng`` (default: captured now), ``extra`` (loop-specific state,
    e.g. a logging window). ``optimizer``/``scheduler`` may also be dicts of several (the unpaired
    loop has one per network).
    """

    def _sd(x):
        if x is None:
            return None
        if isinstance(x, Mapping) and not hasattr(x, "state_dict"):
            return {k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in x.items()}
        return x.state_dict()

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "model": _sd(unwrap_model(model) if isinstance(model, torch.nn.Module) else model),
        "optimizer": _sd(optimizer),
        "scheduler": _sd(scheduler),
        "best": to_plain(dict(best), "best") if best is not None else None,
        "model_spec": validate_model_spec(model_spec),
        "config": to_plain(dict(config), "config") if config is not None else None,
        "rng": capture_rng_state() if rng is None else rng,
        "extra": to_plain(dict(extra), "extra") if extra is not None else {},
        "torch_version": str(torch.__version__),
    }
    return ckpt


def save_checkpoint(path: str | os.PathLike, ckpt: Mapping[str, Any]) -> Path:
    """Check that ``ckpt`` is plain (see :func:`check_plain`) and write it atomically."""
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("save_checkpoint expects a dict from make_checkpoint()")
    check_plain(ckpt, "checkpoint")
    return save_torch(dict(ckpt), path)


def read_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line :class:`CheckpointError` messages naming
    the file: a pickle that would run code is *refused* (torch's advice to retry with
    ``weights_only=False`` is not passed on), anything unreadable is "corrupt, truncated or not a
    torch file"."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol ..." for a raw pickle
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "weights_only" in text or "Weights only" in text:
            why = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise CheckpointError(f"{path}: refused: not a weights-only file, loading it would run pickle code"
                                  f"{' (' + why + ')' if why else ''}; only weights and plain data are loaded") from None
        raise CheckpointError(f"{path}: cannot be read (corrupt, truncated or not a torch file): "
                              f"{text.splitlines()[0] if text else type(e).__name__}") from None
    except Exception as e:  # the unpicklers raise many types on garbage (IndexError, EOFError, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read (corrupt, truncated or not a torch file): {first}") from None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Missing, truncated/corrupt, or foreign files raise :class:`CheckpointError` naming the file.
    Tensors are mapped to ``map_location`` (CPU by default; ``load_state_dict`` then copies them
    to wherever the model/optimizer lives).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt = read_weights_only(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a dehazelab checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return ckpt


def build_model(spec: Mapping[str, Any], registry: Mapping[str, Any]) -> torch.nn.Module:
    """``registry[spec["model"]](**spec["kwargs"])`` with a clear error for unknown names.

    A registry value may be a builder callable or an entry with a callable ``.build`` attribute
    (like ``dehazelab.models.MODELS``).
    """
    spec = validate_model_spec(spec)
    if spec is None:
        raise ValueError("no model spec")
    name = spec["model"]
    if name not in registry:
        raise KeyError(f"model {name!r} is not in the registry; known: {sorted(registry)}")
    entry = registry[name]
    builder = entry if callable(entry) else getattr(entry, "build", None)
    if not callable(builder):
        raise TypeError(f"registry entry for {name!r} is neither callable nor has a .build method")
    return builder(**spec["kwargs"])


def model_from_checkpoint(
    ckpt_or_path: str | os.PathLike | Mapping[str, Any],
    registry: Mapping[str, Any],
    map_location: Any = "cpu",
) -> torch.nn.Module:
    """Rebuild the network from the checkpoint's ``model_spec`` and load its weights (strict)."""
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, Mapping) else load_checkpoint(ckpt_or_path, map_location)
    if not ckpt.get("model_spec"):
        src = ckpt_or_path if not isinstance(ckpt_or_path, Mapping) else "this checkpoint"
        raise CheckpointError(f"{src} has no model_spec; build the model yourself and load ckpt['model']")
    model = build_model(ckpt["model_spec"], registry)
    model.load_state_dict(ckpt["model"])
    return model


# --------------------------------------------------------------------------------------------
# divergence guard
# --------------------------------------------------------------------------------------------
def nonfinite(value: float | torch.Tensor) -> bool:
    """True when ``value`` (a number or a tensor, all elements) is NaN or ±inf."""
    if isinstance(value, torch.Tensor):
        return not bool(torch.isfinite(value).all())
    return not math.isfinite(float(value))
