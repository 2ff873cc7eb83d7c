"""Training from a run spec: ``python -m dehazelab train RUN.yaml`` — also under ``torchrun``.

Papermill notebooks train in one process. Paper-scale runs need a script that ``torchrun`` can start
once per GPU; this module is that script. It reads a *run spec* (YAML), validates all of it before
anything heavy happens (unknown keys, types, data folders, image sizes, model/method arguments),
builds the model and loss (paired) or the method (unpaired) and the datasets, writes the resolved
spec to ``<out>/run_spec.json`` and calls the shared trainer,
:func:`~dehazelab.train.paired.train_paired` or :func:`~dehazelab.train.unpaired.train_unpaired`.

The same command works alone and under ``torchrun``::

    python -m dehazelab train config/runs/aecrnet_full.yaml
    torchrun --standalone --nproc-per-node 4 -m dehazelab train config/runs/aecrnet_full.yaml

Every rank runs the same code. The trainers initialise ``torch.distributed`` themselves (from
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``), split the *global* batch ``train.batch_size`` over the
ranks and write their files from rank 0 only; here, likewise, only rank 0 writes ``run_spec.json`` and
prints. Nothing in the spec depends on the number of ranks, except that ``train.batch_size`` must be
divisible by it (checked up front).

The run spec format (keys, data sets, ``--set`` overrides) is documented, parsed and validated in
:mod:`dehazelab.runs.spec`; resolving its data and building the datasets and the model and loss or
the method is :mod:`dehazelab.runs.build`. This module runs the result; it re-exports the names of
both (``from dehazelab.launch import parse_spec, prepare`` keeps working).

Resuming
--------
A run resumes from ``<out>/last.pt`` when there is one (``--no-resume`` starts over). The spec must
then match the recorded ``run_spec.json`` in everything that changes the weights (all but
``description``, ``data.root``, ``data.cache`` and the trainers' bookkeeping fields such as
``log_every``), including ``train.steps`` — the learning-rate schedule spans it. To train in chunks
(e.g. several cluster jobs), keep the spec and pass ``--stop-at N``.

The notebooks train through this same spec (:mod:`dehazelab.runs`: their grids are specs, and
:func:`dehazelab.runs.ensure` calls :func:`run`). The CR loss draws its extra samples from its own
generator seeded ``10000 + train.seed`` (checkpointed, so resuming is exact).

A run that reaches its last step is scored on ``data.test`` image by image and writes
``per_image.csv`` and ``summary.json`` (and ``weights.pt`` with ``--keep-weights``) beside its
checkpoints: :mod:`dehazelab.runs.execute`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import paths
# the spec and the building live in dehazelab.runs; their names stay importable from here
from .runs.build import Prepared, _say, prepare, rank, world_size  # noqa: F401
from .runs.spec import (  # noqa: F401
    CR_DEFAULTS,
    DATASETS,
    IICL_DEFAULTS,
    KINDS,
    LOSSES,
    SPEC_FILE,
    SPEC_FORMAT,
    STAGED_MODELS,
    TOP_KEYS,
    DataSet,
    DataSpec,
    LaunchError,
    RunSpec,
    UnpairedData,
    _Ctx,
    _plain,
    apply_overrides,
    load_spec,
    parse_spec,
)

__all__ = [
    "LaunchError",
    "DataSet",
    "UnpairedData",
    "DataSpec",
    "RunSpec",
    "Prepared",
    "RunResult",
    "DATASETS",
    "SPEC_FILE",
    "load_spec",
    "parse_spec",
    "apply_overrides",
    "prepare",
    "default_out_dir",
    "run",
    "cli_train",
]


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    out_dir: Path
    history: Any  # pandas DataFrame from the trainer
    spec: RunSpec
    prepared: Prepared
    summary: dict[str, Any] | None = None  # summary.json of a finished run (dehazelab.runs.execute.finish)


def default_out_dir(spec_path: str | os.PathLike) -> Path:
    """``results/train/<spec file stem>`` under :func:`dehazelab.paths.results_dir` (the repository's
    ``results/`` unless ``$DEHAZELAB_RESULTS`` is set) — never relative to the working directory."""
    return paths.results_dir() / "train" / Path(spec_path).stem


def _record(prep: Prepared, out_dir: Path, stop_at: int | None) -> dict[str, Any]:
    spec = prep.spec
    return _plain({
        "format": SPEC_FORMAT,
        "source": str(Path(spec.source).resolve()) if Path(spec.source).is_file() else spec.source,
        "overrides": list(spec.overrides),
        "spec": spec.to_dict(),
        "resolved": {**prep.resolved, "out_dir": str(out_dir.resolve()), "stop_at": stop_at, "argv": list(sys.argv)},
    })


def _weights_relevant(record: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run_spec.json record that must match to resume (see the module docstring)."""
    from .train import config as paired_config
    from .train import unpaired_config as unpaired_train

    spec = copy.deepcopy(dict(record.get("spec") or {}))
    spec.pop("description", None)
    data = spec.get("data") or {}
    data.pop("root", None)
    data.pop("cache", None)
    if spec.get("kind") == "paired":
        book = paired_config.BOOKKEEPING_FIELDS
        late = getattr(paired_config, "LATE_FIELD_DEFAULTS", {})
    else:
        book = unpaired_train.UNPAIRED_BOOKKEEPING_FIELDS
        late = getattr(unpaired_train, "UNPAIRED_LATE_FIELD_DEFAULTS", {})
    # fields the trainers added later mean their default when an older record lacks them (as the trainers read it)
    train = spec["train"] = {**late, **(spec.get("train") or {})}
    for k in book:
        train.pop(k, None)
    vgg = (record.get("resolved") or {}).get("vgg")
    spec["vgg"] = None if vgg is None else str(vgg).split(":", 1)[0]  # imagenet / random(seed=0), not the file path
    return spec


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _check_resume(ctx: _Ctx, out_dir: Path, record: Mapping[str, Any]) -> None:
    old_file = out_dir / SPEC_FILE
    if not (out_dir / "last.pt").exists() or not old_file.exists():
        return
    try:
        old = json.loads(old_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LaunchError(f"{old_file}: cannot read the previous run's spec ({e}); pass --no-resume to start over") from None
    a, b = _flatten(_weights_relevant(old)), _flatten(_weights_relevant(record))
    diff = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    if diff:
        detail = "; ".join(f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in diff[:8])
        raise ctx.err("", f"cannot resume the run in {out_dir}: the spec differs from its {SPEC_FILE} in {detail}"
                          f"{' ...' if len(diff) > 8 else ''}. Pass --no-resume to start over, or --out DIR for a new run "
                          "(to train in chunks keep the spec, train.steps included, and use --stop-at N)")


def _finished_checkpoint(out: Path, spec: RunSpec) -> bool:
    """Whether ``out/last.pt`` holds a finished run (its step = the configured steps)."""
    last = out / "last.pt"
    if not last.is_file():
        return False
    from .train.checkpoint import CheckpointError, read_weights_only

    try:
        step = int(read_weights_only(last).get("step", -1))
    except (CheckpointError, AttributeError, TypeError, ValueError):
        return False  # the trainer reports a corrupt checkpoint itself
    return step >= spec.train.steps


def _out_dir(spec: RunSpec, out_dir: str | os.PathLike | None) -> Path:
    """``out_dir``, or by default :func:`default_out_dir` of the spec file."""
    if out_dir is not None:
        return Path(out_dir)
    if not Path(spec.source).suffix:
        raise LaunchError(f"{spec.source}: no spec file name to derive the output folder from; pass out_dir")
    return default_out_dir(spec.source)


def run(spec: RunSpec | str | os.PathLike, out_dir: str | os.PathLike | None = None, overrides: Sequence[str] = (),
        resume: bool = True, stop_at: int | None = None, progress: bool | None = None, keep_weights: bool = False,
        label: str | None = None) -> RunResult:
    """Validate, build and train; return the trainer's history and what was built.

    ``spec``: a :class:`RunSpec` or the path of a run spec file (then ``overrides`` apply). ``out_dir``
    defaults to :func:`default_out_dir` of the spec file. ``resume``: continue from ``last.pt`` (the
    spec must match the recorded one). ``stop_at``: stop after this step, as if interrupted (the
    schedule still spans the configured steps). ``progress``: tqdm bar (default: on rank 0).
    ``resume="auto"``: resume an interrupted run (``last.pt`` before its last step); anything else — a
    finished ``last.pt`` without ``summary.json`` (the pipeline reruns it after a code change), or
    committed results without checkpoints — trains again from step 0 (the folder's files are replaced).
    ``keep_weights``: write ``weights.pt`` beside the summary; ``label``: the run's name in tables.
    A run that reaches its last step is scored on ``data.test`` image by image and gets its
    ``summary.json`` (:mod:`dehazelab.runs.execute`).
    """
    if not isinstance(spec, RunSpec):
        spec = load_spec(spec, overrides)
    elif overrides:
        raise ValueError("overrides apply when loading a spec file; pass them to load_spec/parse_spec")
    ctx = _Ctx(spec.source, spec.overrides)
    out = _out_dir(spec, out_dir)
    if stop_at is not None and int(stop_at) < 1:
        raise LaunchError(f"--stop-at must be >= 1, got {stop_at}")
    from .repro import check_device

    try:  # before the data are read and before anything is written
        check_device(spec.train.device)
    except ValueError as e:
        raise ctx.err("train.device", str(e)) from None
    if resume == "auto":  # resume only an interrupted run of this folder; anything else starts over
        resume = (out / "last.pt").is_file() and not _finished_checkpoint(out, spec)
    prep = prepare(spec)
    record = _record(prep, out, stop_at)
    if resume:
        _check_resume(ctx, out, record)
    spec_file = out / SPEC_FILE

    def write_spec() -> None:  # called by the trainer once training starts: a refused run writes nothing
        from .io import write_json

        write_json(spec_file, record)

    from .runs.execute import finish, train_stages
    from .train.folder import RunFolderInUse

    show = (rank() == 0) if progress is None else bool(progress)
    try:
        info = train_stages(prep, out, resume=resume, progress=show, stop_at=stop_at, on_start=write_spec)
    except RunFolderInUse as e:
        raise LaunchError(str(e)) from None
    except ValueError as e:
        if not str(e).startswith("cannot resume"):
            raise
        raise LaunchError(f"{e} (command line: --no-resume)") from None
    hist = info["history"]
    summary = None
    done = hist is not None and len(hist) and int(hist["step"].iloc[-1]) >= prep.cfg.steps
    if done and rank() == 0:
        summary = finish(prep, out, info, keep_weights=keep_weights, label=label)
    return RunResult(out_dir=out, history=hist, spec=spec, prepared=prep, summary=summary)


def cli_train(args) -> int:
    """``python -m dehazelab train`` (see :func:`dehazelab.cli.build_parser`)."""
    from .train.checkpoint import CheckpointError, TrainingDiverged
    from .train.interrupt import TrainingInterrupted

    try:
        resume = False if args.no_resume else ("auto" if getattr(args, "restart_finished", False) else True)
        res = run(args.spec, out_dir=args.out, overrides=args.overrides or (), resume=resume,
                  stop_at=args.stop_at, keep_weights=getattr(args, "keep_weights", False),
                  label=getattr(args, "label", None))
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return e.exit_code
    except CheckpointError as e:  # a corrupt or foreign last.pt: resume cannot go on
        print(f"error: {e}; move it away, or start over with --no-resume", file=sys.stderr)
        return 2
    except OSError as e:  # --out unwritable, disk full while checkpointing (the message names the file)
        msg = f"{e.filename}: {e.strerror}" if e.filename else (e.strerror or str(e))
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    hist = res.history
    total = res.prepared.cfg.steps
    msg = f"{res.out_dir}: "
    if hist is not None and len(hist):
        msg += f"step {int(hist.iloc[-1]['step'])}/{total}"
        if res.summary is not None and res.summary.get("psnr") is not None:
            msg += f", test PSNR {res.summary['psnr']:.2f} dB, SSIM {res.summary['ssim']:.4f} ({res.summary['n_test']} images)"
    else:
        msg += f"no steps run (of {total})"
    files = [f for f in ("last.pt", "best.pt", "summary.json", "weights.pt") if (res.out_dir / f).exists()]
    _say(msg + f"; {', '.join(files + [SPEC_FILE])}")
    return 0
