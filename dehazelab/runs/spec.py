"""The run spec: what ``python -m dehazelab train RUN.yaml`` trains (:mod:`dehazelab.launch` runs it).

A run spec (YAML, or the ``run_spec.json`` an earlier run wrote) names the model and loss (paired)
or the method (unpaired), the data and the trainer config. :func:`load_spec` / :func:`parse_spec`
check all of it except the folders and the model/method arguments, which
:func:`dehazelab.runs.build.prepare` checks before anything heavy happens; every error is a
:class:`LaunchError` naming the spec file and the key.

Run spec
--------
Paired (hazy → clear with ground truth; AECR-Net, AOD-Net, IICL)::

    kind: paired
    description: free text (optional)
    model: aecrnet                 # a name of dehazelab.models.MODELS (`python -m dehazelab models`)
    model_kwargs: {ngf: 64}        # keyword arguments of that builder (recorded in the checkpoints)
    loss: cr                       # l1 (default) | cr = L1 + beta*CR (dehazelab.losses.cr.CRLoss)
    loss_kwargs: {beta: 0.1, n_pos: 1, n_neg: 5, extra_positives: jitter, ablation: false,
                  imagenet_norm: false, vgg_weights: auto, vgg_path: null, vgg_seed: 0}
    train: {steps: 500000, batch_size: 16, crop: 240, ...}   # PairedTrainConfig fields
    data: {root: null, train: sots-train, test: sots-test, cache: true}
    init: {run: <run id>, prefix: ""}   # optional: start from another run's weights (fine-tuning)

``init`` (paired only) starts training from the ``weights.pt`` of a finished run kept beside this
one (``<out>/../<run id>/weights.pt``, the runs folder of the same size) instead of a random
initialisation: every tensor of those weights, its name prefixed with ``prefix`` (e.g.
``backbone.`` to start an IICL model's backbone from a plain AECR-Net run), must exist in this model
with the same shape; this model's other tensors (e.g. IICL's pre-restore module) keep their seeded
initialisation. The optimiser and the learning-rate schedule start afresh.

Unpaired (CUT, FastCUT, CycleGAN, CDD-GAN)::

    kind: unpaired
    method: cut                    # cut | fastcut | cyclegan | cddgan (dehazelab.methods.build_method)
    method_kwargs: {ngf: 64, n_blocks: 9}   # ``seed`` defaults to train.seed
    train: {n_steps: 15000, n_steps_decay: 15000, crop: 256, lr_every: epoch, ...}  # UnpairedTrainConfig
    data: {root: null, train: sots-train, test: sots-test}

``train.lr_every: epoch`` (unpaired) is resolved to the steps per epoch of the training set
(``len(train_set) // batch_size``): the official once-per-epoch learning-rate staircase.

Data
~~~~
``data.root``: the data folder; ``null`` = the project's setting (:func:`dehazelab.paths.data_root`:
``$DEHAZELAB_DATA``, else ``../shared/data`` next to the repository). A relative path is taken
relative to the repository root, not the working directory. ``data.cache``: keep decoded images in
memory (default true; set false for ITS-sized sets). ``data.train`` / ``data.test`` (``test: null``
= no evaluation) are each a *data set*: a name of :data:`DATASETS`, or a mapping

* ``name``: start from that named set (its keys below can then be overridden);
* ``folder``: relative to ``data.root`` (``.`` = the root itself) or absolute;
* ``layout``: ``auto`` (detected) or a name of :data:`dehazelab.data.layouts.LAYOUTS`
  (``sots``, ``reside-its``, ``nh-haze``, ...);
* ``scenes``: scene ids to keep — a list of ids and inclusive ranges ``"1400-1429"``; every one
  listed must exist;
* ``levels``: haze levels to keep (SOTS: 1…10);
* ``max_images``: keep this many pairs spread evenly over the sorted selection, first and last included
  (``0`` = all; :func:`dehazelab.data.selection.spread`).

Paired training uses random crops of the pairs (``train.crop``, flips/rotations when
``train.augment``). For ``kind: unpaired`` ``data.train`` is either a data set — split as notebook 02
does: hazy images of the first half of its scenes, clear images (one per scene) of the second half,
so no hazy image meets its own clear scene — or ``{hazy: <data set>, clear: <data set>}``: the hazy
images of one set and the (distinct) clear images of the other; a ``hazy-only`` folder contributes
its images as they are. Test sets are always paired (PSNR/SSIM).

A run never falls back to the synthetic set silently — name ``synthetic-train`` / ``synthetic-test``
to use it.

Overrides
---------
``--set key.sub=value`` (repeatable) changes a key before validation; the value is parsed as YAML
(``--set train.steps=10 --set data.test=null --set "model_kwargs={ngf: 8}"``). The spec loader is PyYAML's safe
loader with two changes: ``2e-4`` is a float (YAML 1.2; PyYAML would read a string) and a key that
appears twice is an error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# spec checking helpers and the YAML reading have modules of their own (names re-exported here)
from .checks import LaunchError, _bool, _check_keys, _Ctx, _int, _show
from .data_spec import DATASETS, DataSet, DataSpec, UnpairedData, _data  # the data part of a spec
from .spec_yaml import _yaml_load, apply_overrides

__all__ = [
    "LaunchError",
    "DataSet",
    "UnpairedData",
    "DataSpec",
    "RunSpec",
    "DATASETS",
    "SPEC_FILE",
    "SPEC_FORMAT",
    "load_spec",
    "parse_spec",
    "apply_overrides",
]

SPEC_FILE = "run_spec.json"
SPEC_FORMAT = "dehazelab-run-spec/1"
KINDS = ("paired", "unpaired")
LOSSES = ("l1", "cr", "iicl")
TOP_KEYS: dict[str, tuple[str, ...]] = {
    "paired": ("kind", "description", "model", "model_kwargs", "loss", "loss_kwargs", "warmup_steps", "init", "train",
               "data"),
    "unpaired": ("kind", "description", "method", "method_kwargs", "train", "data"),
}
#: Models trained in stages (``warmup_steps``: the PRM alone first, then everything; docs/methods.md §4).
STAGED_MODELS = ("iicl", "iicl-aodnet")
TOP_REQUIRED: dict[str, tuple[str, ...]] = {"paired": ("model", "train", "data"), "unpaired": ("method", "train", "data")}
#: ``loss_kwargs`` of ``loss: cr`` with their defaults (the paper's β = 0.1, one positive, one negative).
CR_DEFAULTS: dict[str, Any] = {"beta": 0.1, "n_pos": 1, "n_neg": 1, "extra_positives": "jitter", "ablation": False,
                               "imagenet_norm": False, "vgg_weights": "auto", "vgg_path": None, "vgg_seed": 0}
#: ``loss_kwargs`` of ``loss: iicl`` (:class:`dehazelab.losses.iicl.IICLLoss`, a reconstruction: docs/methods.md
#: §4) with their defaults: the weights of the PRM's L1, the inter-image CR and the intra-image term, then
#: the intra term's settings (``intra_*``: :class:`~dehazelab.losses.iicl.IntraContrast`).
IICL_DEFAULTS: dict[str, Any] = {"lambda_prm": 1.0, "beta_inter": 0.1, "beta_intra": 0.1, "tau": 0.07,
                                 "intra_patch": 16, "intra_k": 4, "intra_by": "dark_channel", "intra_layer": "relu3_1",
                                 "vgg_weights": "auto", "vgg_path": None, "vgg_seed": 0}

# --------------------------------------------------------------------------------------------
# the spec
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunSpec:
    """A validated run spec. ``train`` is the trainer's config; with ``lr_every_epoch`` its ``lr_every``
    is a placeholder until :func:`~dehazelab.runs.build.prepare` knows the steps per epoch."""

    kind: str
    train: Any  # PairedTrainConfig | UnpairedTrainConfig
    data: DataSpec
    model: str | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss: str | None = None
    loss_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    method: str | None = None
    method_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    warmup_steps: int = 0
    init: dict[str, str] | None = None
    description: str = ""
    lr_every_epoch: bool = False
    source: str = "<run spec>"
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The spec in the YAML's own format, every default filled in (loadable by :func:`parse_spec`)."""
        train = self.train.to_dict()
        if self.lr_every_epoch:
            train["lr_every"] = "epoch"
        out: dict[str, Any] = {"kind": self.kind, "description": self.description}
        if self.kind == "paired":
            out.update(model=self.model, model_kwargs=_plain(self.model_kwargs), loss=self.loss,
                       loss_kwargs=_plain(self.loss_kwargs), warmup_steps=self.warmup_steps)
            if self.init:  # absent unless given, so the ids of runs without it are unchanged
                out["init"] = dict(self.init)
        else:
            out.update(method=self.method, method_kwargs=_plain(self.method_kwargs))
        out.update(train=train, data=self.data.to_dict())
        return out


def _plain(obj: Any) -> Any:
    """JSON round trip (tuples → lists), so specs compare equal to what ``run_spec.json`` holds."""
    from ..io import json_default

    return json.loads(json.dumps(obj, default=json_default))


def _train_config(ctx: _Ctx, kind: str, d: Any) -> tuple[Any, bool]:
    if kind == "paired":
        from ..train.config import PairedTrainConfig as cls
    else:
        from ..train.unpaired import UnpairedTrainConfig as cls
    fields = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    _check_keys(ctx, "train", d, fields, required)
    d = dict(d)
    epoch = kind == "unpaired" and d.get("lr_every") == "epoch"
    if epoch:
        d["lr_every"] = 1  # placeholder until prepare() knows the steps per epoch
    try:
        return cls(**d), epoch
    except (TypeError, ValueError) as e:
        m = re.search(r"Config\.(\w+)", str(e))
        key = f"train.{m.group(1)}" if m and m.group(1) in fields else "train"
        raise ctx.err(key, str(e)) from None


def _cr_kwargs(ctx: _Ctx, d: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys(ctx, "loss_kwargs", d, tuple(CR_DEFAULTS))
    kw = {**CR_DEFAULTS, **d}
    if isinstance(kw["beta"], bool) or not isinstance(kw["beta"], (int, float)) or not kw["beta"] >= 0:
        raise ctx.err("loss_kwargs.beta", f"must be a number >= 0, got {_show(kw['beta'])}")
    kw["beta"] = float(kw["beta"])
    for k in ("n_pos", "n_neg"):
        kw[k] = _int(ctx, f"loss_kwargs.{k}", kw[k], 1)
    kw["vgg_seed"] = _int(ctx, "loss_kwargs.vgg_seed", kw["vgg_seed"], 0)
    for k in ("ablation", "imagenet_norm"):
        _bool(ctx, f"loss_kwargs.{k}", kw[k])
    choices = {"extra_positives": ("jitter", "other_clear", "repeat"), "vgg_weights": ("auto", "imagenet", "random")}
    for k, allowed in choices.items():
        if kw[k] not in allowed:
            raise ctx.err(f"loss_kwargs.{k}", f"must be one of {', '.join(allowed)}, got {_show(kw[k])}")
    if kw["vgg_path"] is not None and not isinstance(kw["vgg_path"], str):
        raise ctx.err("loss_kwargs.vgg_path", f"must be a path string or null, got {_show(kw['vgg_path'])}")
    return kw


def _iicl_kwargs(ctx: _Ctx, d: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys(ctx, "loss_kwargs", d, tuple(IICL_DEFAULTS))
    kw = {**IICL_DEFAULTS, **d}
    for k in ("lambda_prm", "beta_inter", "beta_intra", "tau"):
        if isinstance(kw[k], bool) or not isinstance(kw[k], (int, float)) or not kw[k] >= 0:
            raise ctx.err(f"loss_kwargs.{k}", f"must be a number >= 0, got {_show(kw[k])}")
        kw[k] = float(kw[k])
    for k in ("intra_patch", "intra_k"):
        kw[k] = _int(ctx, f"loss_kwargs.{k}", kw[k], 1)
    kw["vgg_seed"] = _int(ctx, "loss_kwargs.vgg_seed", kw["vgg_seed"], 0)
    choices = {"intra_by": ("dark_channel", "luminance"), "vgg_weights": ("auto", "imagenet", "random"),
               "intra_layer": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")}
    for k, allowed in choices.items():
        if kw[k] not in allowed:
            raise ctx.err(f"loss_kwargs.{k}", f"must be one of {', '.join(allowed)}, got {_show(kw[k])}")
    return kw


def parse_spec(raw: Any, source: str = "<run spec>", overrides: Sequence[str] = ()) -> RunSpec:
    """Validate a run spec (a mapping as read from YAML) after applying ``--set`` ``overrides``.

    Only the spec itself is checked here (keys, types, names, the trainer config); folders and model
    arguments are checked by :func:`~dehazelab.runs.build.prepare`. Raises :class:`LaunchError` naming
    ``source`` and the key.
    """
    ctx = _Ctx(source, overrides)
    if isinstance(raw, Mapping) and raw.get("format") == SPEC_FORMAT and "spec" in raw:
        raw = raw["spec"]  # a run_spec.json written by an earlier run
    if not isinstance(raw, Mapping):
        raise ctx.err("", f"a run spec must be a mapping of keys (kind, train, data, ...), got {_show(raw)}")
    raw = apply_overrides(raw, overrides, source)
    kind = raw.get("kind")
    if kind is None:
        raise ctx.err("kind", f"missing (required): one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ctx.err("kind", f"must be one of {', '.join(KINDS)}, got {_show(kind)}")
    other = "unpaired" if kind == "paired" else "paired"
    note = {k: f"{k!r} is a key of kind: {other}. " for k in TOP_KEYS[other] if k not in TOP_KEYS[kind]}
    _check_keys(ctx, "", raw, TOP_KEYS[kind], TOP_REQUIRED[kind], note)
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ctx.err("description", f"must be a string, got {_show(description)}")
    cfg, epoch = _train_config(ctx, kind, raw["train"])
    data = _data(ctx, kind, raw["data"])
    spec = RunSpec(kind=kind, train=cfg, data=data, description=description, lr_every_epoch=epoch,
                   source=source, overrides=tuple(overrides))

    (_paired if kind == "paired" else _unpaired)(ctx, spec, raw)
    return spec


def _kwargs(ctx: _Ctx, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = raw.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
        raise ctx.err(key, f"must be a mapping of keyword arguments, got {_show(v)}")
    return copy.deepcopy(dict(v))


def _paired(ctx: _Ctx, spec: RunSpec, raw: Mapping[str, Any]) -> None:
    """The model, loss and stage keys of a ``kind: paired`` spec, into ``spec``."""
    from ..models import MODELS

    model = raw["model"]
    if model not in MODELS:
        raise ctx.err("model", f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    loss = raw.get("loss") or "l1"
    if loss not in LOSSES:
        raise ctx.err("loss", f"must be one of {', '.join(LOSSES)}, got {_show(loss)}")
    loss_kwargs = _kwargs(ctx, raw, "loss_kwargs")
    if loss == "l1" and loss_kwargs:
        raise ctx.err(f"loss_kwargs.{next(iter(loss_kwargs))}", "loss: l1 takes no arguments")
    spec.model, spec.model_kwargs, spec.loss = model, _kwargs(ctx, raw, "model_kwargs"), loss
    spec.loss_kwargs = (_cr_kwargs(ctx, loss_kwargs) if loss == "cr" else
                        _iicl_kwargs(ctx, loss_kwargs) if loss == "iicl" else {})
    spec.warmup_steps = _int(ctx, "warmup_steps", raw.get("warmup_steps") or 0, 0)
    if spec.warmup_steps and model not in STAGED_MODELS:
        raise ctx.err("warmup_steps", f"model {model!r} has no training stages (only {', '.join(STAGED_MODELS)})")
    spec.init = _init(ctx, raw.get("init"))


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _init(ctx: _Ctx, v: Any) -> dict[str, str] | None:
    """``init: {run: <run id>, prefix: ""}`` (or ``init: <run id>``), checked; ``None`` when absent."""
    if v is None:
        return None
    if isinstance(v, str):
        v = {"run": v}
    if not isinstance(v, Mapping):
        raise ctx.err("init", f"must be a run id or a mapping {{run: <run id>, prefix: ...}}, got {_show(v)}")
    unknown = sorted(set(v) - {"run", "prefix"})
    if unknown:
        raise ctx.err(f"init.{unknown[0]}", "unknown key (known: run, prefix)")
    run, prefix = v.get("run"), v.get("prefix") or ""
    if not isinstance(run, str) or not _RUN_NAME.fullmatch(run) or ".." in run:
        raise ctx.err("init.run", f"must be the folder name of a run beside this one, got {_show(run)}")
    if not isinstance(prefix, str):
        raise ctx.err("init.prefix", f"must be a string, got {_show(prefix)}")
    return {"run": run, "prefix": prefix}


def _unpaired(ctx: _Ctx, spec: RunSpec, raw: Mapping[str, Any]) -> None:
    """The method keys of a ``kind: unpaired`` spec, into ``spec`` (``method_kwargs.seed``: ``train.seed``)."""
    from ..methods import METHODS

    method = raw["method"]
    if method not in METHODS:
        raise ctx.err("method", f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    spec.method = method
    spec.method_kwargs = {"seed": spec.train.seed, **_kwargs(ctx, raw, "method_kwargs")}


def load_spec(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunSpec:
    """Read and validate the run spec file ``path`` (YAML; a ``run_spec.json`` works too)."""
    if str(path) == "-":
        text = sys.stdin.read()
        raw = _yaml_load(text, "<stdin>")
        if raw is None:
            raise LaunchError("<stdin>: the run spec is empty")
        return parse_spec(raw, "<stdin>", overrides)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LaunchError(f"{path}: no such run spec file") from None
    except OSError as e:
        raise LaunchError(f"{path}: cannot read the run spec: {e}") from None
    raw = _yaml_load(text, str(path))
    if raw is None:
        raise LaunchError(f"{path}: the run spec is empty")
    return parse_spec(raw, str(path), overrides)

