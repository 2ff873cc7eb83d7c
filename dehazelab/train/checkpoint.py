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
* **Checkpoint folder** with ``last.pt`` / ``best.pt`` / rotated ``step_XXXXXXXX.pt`` snapshots /
  ``prediverge.pt`` (:class:`CheckpointDir`).
* **History**: an append-only CSV that survives crashes and is truncated back to the checkpoint on
  resume (:class:`HistoryLog`), and a running mean over a logging window (:class:`MeanWindow`).

The official AECR-Net script pickles whole python lists (losses, psnrs) into its checkpoint and
loads with the (then default) full unpickler; we keep the history in a CSV instead and never unpickle
arbitrary objects.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import random
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Any

import numpy as np
import torch

from dehazelab.divergence import TrainingDiverged  # re-exported: the loops raise it
from dehazelab.io import atomic_write_text, remove_stale_tmp, save_torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SECONDS",
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
    "CheckpointDir",
    "RunFolderInUse",
    "start_over",
    "HistoryLog",
    "MeanWindow",
]

CHECKPOINT_FORMAT = "dehazelab.checkpoint/1"
#: ``last.pt`` is written at least this often (seconds of training) whatever the step-based policy says.
CHECKPOINT_SECONDS = 300.0


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


# --------------------------------------------------------------------------------------------
# checkpoint folder with rotation
# --------------------------------------------------------------------------------------------
class CheckpointDir:
    """The checkpoint files of one run folder.

    * ``last.pt`` — the latest good state (what ``resume`` continues from);
    * ``best.pt`` — the state at the best evaluation so far;
    * ``step_XXXXXXXX.pt`` — numbered snapshots, of which only the newest ``keep`` are kept;
    * ``prediverge.pt`` — the state just before a step whose loss went non-finite.

    All writes are atomic, so a crash during a save leaves the previous file in place.
    """

    SNAPSHOT_RE = re.compile(r"^step_(\d{8,})\.pt$")

    def __init__(self, folder: str | os.PathLike, keep: int = 3, every_seconds: float | None = CHECKPOINT_SECONDS):
        if keep < 1:
            raise ValueError("keep must be >= 1")
        if every_seconds is not None and not every_seconds > 0:
            raise ValueError(f"every_seconds must be > 0 or None, got {every_seconds}")
        self.folder = Path(folder)
        self.keep = int(keep)
        self.every_seconds = every_seconds
        self._last_saved = time.monotonic()  # the clock of the time-based last.pt starts with the run

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    @property
    def prediverge(self) -> Path:
        return self.folder / "prediverge.pt"

    def snapshot_path(self, step: int) -> Path:
        return self.folder / f"step_{int(step):08d}.pt"

    def snapshots(self) -> list[Path]:
        """Existing numbered snapshots, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := self.SNAPSHOT_RE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save_last(self, ckpt: Mapping[str, Any]) -> Path:
        path = save_checkpoint(self.last, ckpt)
        self._last_saved = time.monotonic()
        return path

    def save_best(self, ckpt: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.best, ckpt)

    def save_prediverge(self, ckpt: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.prediverge, ckpt)

    def save_due(self, make: Callable[[int], Mapping[str, Any]], *, step: int, last_step: int,
                 ckpt_every: int | None, snapshot_every: int | None, evaluated: bool, improved: bool,
                 force_last: bool = False) -> None:
        """The checkpoint policy shared by the training loops, at the end of ``step``.

        ``best.pt`` when the evaluation ``improved``; a snapshot every ``snapshot_every`` steps;
        ``last.pt`` at the final step, every ``ckpt_every`` steps, or (``ckpt_every`` None) after
        each evaluation — and in any case once ``every_seconds`` have passed since the last one
        (default :data:`CHECKPOINT_SECONDS`, so a kill loses minutes, not the run), or when
        ``force_last`` (a stop on a signal). ``make(step)`` builds the checkpoint only when one is due.
        """
        snapshot_due = snapshot_every is not None and step % snapshot_every == 0
        last_due = (force_last or step == last_step
                    or (ckpt_every is not None and step % ckpt_every == 0)
                    or (ckpt_every is None and evaluated)
                    or (self.every_seconds is not None and time.monotonic() - self._last_saved >= self.every_seconds))
        if improved or snapshot_due or last_due:
            ck = make(step)
            if improved:
                self.save_best(ck)
            if snapshot_due:
                self.save_snapshot(ck)
            if last_due:
                self.save_last(ck)

    def save_snapshot(self, ckpt: Mapping[str, Any]) -> Path:
        """Write ``step_<ckpt['step']>.pt`` and delete all but the newest ``keep`` snapshots."""
        path = save_checkpoint(self.snapshot_path(ckpt["step"]), ckpt)
        for old in self.snapshots()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def remove_stale_tmp(self, extra_names: tuple[str, ...] = ("history.csv", "config.json", "run_spec.json")) -> list[Path]:
        """Delete the temporary files a killed write of this folder's own files left behind
        (:func:`dehazelab.io.remove_stale_tmp`)."""
        import glob

        names = [glob.escape(n) for n in ("last.pt", "best.pt", "prediverge.pt", *extra_names)] + ["step_*.pt"]
        return [p for n in names for p in remove_stale_tmp(self.folder, n)]

    def clear(self) -> None:
        """Delete this run's checkpoint files (a fresh start in an old folder)."""
        for p in [self.last, self.best, self.prediverge, *self.snapshots()]:
            p.unlink(missing_ok=True)


class RunFolderInUse(FileExistsError):
    """Starting from step 0 would delete files of another run (resume was asked for, no ``last.pt``)."""


def _records_same_run(config_file: Path, identity: Mapping[str, Any]) -> bool:
    try:
        old = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = json.loads(json.dumps(dict(identity), default=str))
    return isinstance(old, dict) and all(old.get(k) == v for k, v in want.items())


def start_over(ckdir: "CheckpointDir", history: "HistoryLog", *, resume: bool, config_file: str | os.PathLike,
               identity: Mapping[str, Any], main: bool = True) -> None:
    """Prepare ``ckdir``'s folder for a run that starts at step 0.

    ``resume=False`` is the explicit request to start over: the folder's checkpoints (``last.pt``,
    ``best.pt``, ``prediverge.pt``, snapshots) and history are deleted. ``resume=True`` without a
    ``last.pt``: when the folder holds any of those files, :class:`RunFolderInUse` names them and
    nothing is deleted — unless ``config_file`` records this very run (every key of ``identity``,
    e.g. the config hash, equal): the same run stopped before its first checkpoint, which starting
    over reproduces. Only the main process deletes (``main``); every process checks.
    """
    leftovers = [p for p in (ckdir.last, ckdir.best, ckdir.prediverge, *ckdir.snapshots(), history.path) if p.exists()]
    if leftovers and resume and not _records_same_run(Path(config_file), identity):
        names = ", ".join(p.name for p in leftovers)
        raise RunFolderInUse(
            f"{ckdir.folder}: no last.pt to resume from, but the folder holds {names} of another run; nothing was "
            "deleted. Train into another folder, move them away, or start over with resume=False "
            "(command line: --no-resume), which deletes them")
    if main:
        history.clear()
        ckdir.clear()


# --------------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)  # repr round-trips exactly
    return str(v)


class HistoryLog:
    """Append-only CSV of training rows, robust to crashes.

    Each :meth:`append` adds one line and flushes it, so a long run costs O(1) per row (an atomic
    rewrite happens only when a row brings a new column). Floats are written with ``repr`` (exact
    round trip); ``None``/NaN as empty cells. :meth:`truncate` drops rows past a step (those
    written after the checkpoint a run resumes from) and a half-written last line.
    """

    def __init__(self, path: str | os.PathLike, step_key: str = "step"):
        self.path = Path(path)
        self.step_key = step_key

    def _read_rows(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.path.is_file():
            return [], []
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # a crash mid-append: drop the partial line
            text = text[: text.rfind("\n") + 1]
        if not text.strip():
            return [], []
        reader = csv.DictReader(_io.StringIO(text))
        return list(reader.fieldnames or []), list(reader)

    def columns(self) -> list[str]:
        return self._read_rows()[0]

    def _rewrite(self, columns: list[str], rows: list[Mapping[str, Any]]) -> None:
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
        atomic_write_text(self.path, buf.getvalue())

    def _header(self) -> list[str]:
        """Column names from the first line (``[]`` when there is no complete header)."""
        if not self.path.is_file():
            return []
        with open(self.path, encoding="utf-8", newline="") as f:
            first = f.readline()
        if not first.endswith("\n"):
            return []
        return next(csv.reader([first]), [])

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row; new keys become new columns (existing rows get empty cells)."""
        if self.step_key not in row:
            raise KeyError(f"history row needs a {self.step_key!r} entry")
        columns = self._header()
        new = [k for k in row if k not in columns]
        if not columns or new or not self._ends_with_newline():
            rows = self._read_rows()[1] if columns else []
            self._rewrite(columns + new, [*rows, row])
            return
        buf = _io.StringIO()
        csv.DictWriter(buf, fieldnames=columns, lineterminator="\n").writerow({k: _cell(row.get(k)) for k in columns})
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()

    def truncate(self, max_step: int) -> None:
        """Keep only rows with ``step <= max_step`` (and drop a partial last line)."""
        columns, rows = self._read_rows()
        if not columns:
            if self.path.exists():
                self.path.unlink()
            return
        keep = [r for r in rows if r.get(self.step_key, "") != "" and int(float(r[self.step_key])) <= max_step]
        self._rewrite(columns, keep)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self):
        """The history as a pandas DataFrame (empty frame when nothing was logged)."""
        import pandas as pd

        columns, rows = self._read_rows()
        if not columns:
            return pd.DataFrame()
        if not rows:
            return pd.DataFrame(columns=columns)
        return pd.read_csv(_io.StringIO(self._text_clean()))

    def _text_clean(self) -> str:
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return text


class MeanWindow:
    """Running means of named floats over a logging window; its state goes into checkpoints so
    a resumed run writes the same averaged rows as an uninterrupted one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def __len__(self) -> int:
        return max(self.counts.values(), default=0)

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self.counts = {k: int(v) for k, v in state.get("counts", {}).items()}
