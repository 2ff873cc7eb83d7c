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

Overrides and resuming
----------------------
``--set key.sub=value`` (repeatable) changes a key before validation; the value is parsed as YAML
(``--set train.steps=10 --set data.test=null --set "model_kwargs={ngf: 8}"``). The spec loader is PyYAML's safe
loader with two changes: ``2e-4`` is a float (YAML 1.2; PyYAML would read a string) and a key that
appears twice is an error.

A run resumes from ``<out>/last.pt`` when there is one (``--no-resume`` starts over). The spec must
then match the recorded ``run_spec.json`` in everything that changes the weights (all but
``description``, ``data.root``, ``data.cache`` and the trainers' bookkeeping fields such as
``log_every``), including ``train.steps`` — the learning-rate schedule spans it. To train in chunks
(e.g. several cluster jobs), keep the spec and pass ``--stop-at N``.

The notebooks train through this same spec (:mod:`dehazelab.runs`: their grids are specs, and
:func:`dehazelab.runs.ensure` calls :func:`run`). The CR loss draws its extra samples from its own
generator seeded ``10000 + train.seed`` (checkpointed, so resuming is exact). A run never falls back
to the synthetic set silently — name ``synthetic-train`` / ``synthetic-test`` to use it.

A run that reaches its last step is scored on ``data.test`` image by image and writes
``per_image.csv`` and ``summary.json`` (and ``weights.pt`` with ``--keep-weights``) beside its
checkpoints: :mod:`dehazelab.runs.execute`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .data.errors import DataError
from .data.selection import filter_pairs, scene_halves, spread
from .data.subsets import SOTS_TEST, SOTS_TRAIN

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

SPEC_FILE = "run_spec.json"
SPEC_FORMAT = "dehazelab-run-spec/1"
KINDS = ("paired", "unpaired")
LOSSES = ("l1", "cr", "iicl")
TOP_KEYS: dict[str, tuple[str, ...]] = {
    "paired": ("kind", "description", "model", "model_kwargs", "loss", "loss_kwargs", "warmup_steps", "train", "data"),
    "unpaired": ("kind", "description", "method", "method_kwargs", "train", "data"),
}
#: Models trained in stages (``warmup_steps``: the PRM alone first, then everything; docs/methods.md §4).
STAGED_MODELS = ("iicl", "iicl-aodnet")
TOP_REQUIRED: dict[str, tuple[str, ...]] = {"paired": ("model", "train", "data"), "unpaired": ("method", "train", "data")}
DATA_KEYS = ("root", "train", "test", "cache")
SET_KEYS = ("name", "folder", "layout", "scenes", "levels", "max_images")
#: ``loss_kwargs`` of ``loss: cr`` with their defaults (the paper's β = 0.1, one positive, one negative).
CR_DEFAULTS: dict[str, Any] = {"beta": 0.1, "n_pos": 1, "n_neg": 1, "extra_positives": "jitter", "ablation": False,
                               "imagenet_norm": False, "vgg_weights": "auto", "vgg_path": None, "vgg_seed": 0}
#: ``loss_kwargs`` of ``loss: iicl`` (:class:`dehazelab.losses.iicl.IICLLoss`, a reconstruction: docs/methods.md
#: §4) with their defaults: the weights of the PRM's L1, the inter-image CR and the intra-image term, then
#: the intra term's settings (``intra_*``: :class:`~dehazelab.losses.iicl.IntraContrast`).
IICL_DEFAULTS: dict[str, Any] = {"lambda_prm": 1.0, "beta_inter": 0.1, "beta_intra": 0.1, "tau": 0.07,
                                 "intra_patch": 16, "intra_k": 4, "intra_by": "dark_channel", "intra_layer": "relu3_1",
                                 "vgg_weights": "auto", "vgg_path": None, "vgg_seed": 0}

#: Named data sets: the choices of the notebooks (SOTS-indoor scene split of ``dehazelab.data.subsets``,
#: NH-HAZE test pairs, the offline synthetic set).
DATASETS: dict[str, dict[str, Any]] = {
    "sots-train": {"folder": "sots-indoor", "layout": "sots", "scenes": (f"{SOTS_TRAIN[0]}-{SOTS_TRAIN[1]}",),
                   "about": f"SOTS-indoor scenes {SOTS_TRAIN[0]}-{SOTS_TRAIN[1]}, all haze levels (notebooks 01-04)"},
    "sots-test": {"folder": "sots-indoor", "layout": "sots", "scenes": (f"{SOTS_TEST[0]}-{SOTS_TEST[1]}",),
                  "about": f"SOTS-indoor scenes {SOTS_TEST[0]}-{SOTS_TEST[1]}, all haze levels (the unseen test scenes)"},
    "nh-haze-test": {"folder": "nh-haze", "layout": "nh-haze", "scenes": None,
                     "about": "the NH-HAZE pairs of the data folder (51-53 in the shared copy)"},
    "synthetic-train": {"synthetic": "train", "about": "scikit-image photographs with synthetic haze, train scenes"},
    "synthetic-test": {"synthetic": "test", "about": "scikit-image photographs with synthetic haze, test scenes"},
}


class LaunchError(ValueError):
    """An invalid run spec or data selection; the message names the spec file and the key."""


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------
class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading ``2e-4`` as a float (YAML 1.2) and refusing duplicate keys."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            dup = key in out
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark) from None
        if dup:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_load(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise LaunchError(f"{where}: not valid YAML: {e}") from None


# --------------------------------------------------------------------------------------------
# the spec
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DataSet:
    """A selection of images (see the module docstring); ``name`` alone = a :data:`DATASETS` entry."""

    name: str | None = None
    folder: str | None = None
    layout: str = "auto"
    scenes: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    max_images: int = 0

    @property
    def synthetic(self) -> str | None:
        """``"train"`` / ``"test"`` for the synthetic sets, else ``None``."""
        return DATASETS[self.name].get("synthetic") if self.name in DATASETS else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "folder": self.folder, "layout": self.layout,
                "scenes": None if self.scenes is None else list(self.scenes),
                "levels": None if self.levels is None else list(self.levels), "max_images": self.max_images}


@dataclasses.dataclass(frozen=True)
class UnpairedData:
    """Unpaired training images: ``clear is None`` = the scene halves of ``hazy`` (notebook 02)."""

    hazy: DataSet
    clear: DataSet | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.clear is None:
            return self.hazy.to_dict()
        return {"hazy": self.hazy.to_dict(), "clear": self.clear.to_dict()}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    root: str | None
    train: DataSet | UnpairedData
    test: DataSet | None
    cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "train": self.train.to_dict(),
                "test": None if self.test is None else self.test.to_dict(), "cache": self.cache}


@dataclasses.dataclass
class RunSpec:
    """A validated run spec. ``train`` is the trainer's config; with ``lr_every_epoch`` its
    ``lr_every`` is a placeholder until :func:`prepare` knows the steps per epoch."""

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
        else:
            out.update(method=self.method, method_kwargs=_plain(self.method_kwargs))
        out.update(train=train, data=self.data.to_dict())
        return out


def _plain(obj: Any) -> Any:
    """JSON round trip (tuples → lists), so specs compare equal to what ``run_spec.json`` holds."""
    from .io import json_default

    return json.loads(json.dumps(obj, default=json_default))


class _Ctx:
    """Where a value came from, for error messages: the file, and ``--set`` when overridden."""

    def __init__(self, source: str, overrides: Sequence[str] = ()):
        self.source = source
        self.overridden = [o.partition("=")[0].strip() for o in overrides]

    def err(self, key: str, msg: str) -> LaunchError:
        via = next((o for o in self.overridden if key == o or key.startswith(o + ".") or o.startswith(key + ".")), None)
        where = self.source + (f" (--set {via})" if via else "")
        return LaunchError(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")


def _show(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _check_keys(ctx: _Ctx, key: str, d: Any, allowed: Sequence[str], required: Sequence[str] = (),
                note: Mapping[str, str] | None = None) -> None:
    if not isinstance(d, Mapping):
        raise ctx.err(key, f"must be a mapping, got {_show(d)}")
    for k in d:
        if k not in allowed:
            full = f"{key}.{k}" if key else str(k)
            hint = difflib.get_close_matches(str(k), list(allowed), 1)
            extra = (note or {}).get(k) or (f"did you mean {hint[0]!r}? " if hint else "")
            raise ctx.err(full, f"unknown key; {extra}valid keys here: {', '.join(allowed)}")
    for k in required:
        if k not in d:
            raise ctx.err(f"{key}.{k}" if key else k, "missing (required)")


def _int(ctx: _Ctx, key: str, v: Any, minimum: int) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ctx.err(key, f"must be an integer >= {minimum}, got {_show(v)}")
    return v


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ctx.err(key, f"must be true or false, got {_show(v)}")
    return v


def _ids(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or any(isinstance(x, bool) or not isinstance(x, (str, int)) for x in v):
        raise ctx.err(key, f"must be a non-empty list of ids or 'lo-hi' ranges, got {_show(v)}")
    out = []
    for x in v:
        s = str(x).strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
        if m and int(m.group(1)) > int(m.group(2)):
            raise ctx.err(key, f"range {s!r} is reversed")
        out.append(f"{m.group(1)}-{m.group(2)}" if m else s)
    return tuple(out)


def _expand_ids(ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in ids:
        m = re.fullmatch(r"(\d+)-(\d+)", s)
        out.extend([str(i) for i in range(int(m.group(1)), int(m.group(2)) + 1)] if m else [s])
    return out


def _data_set(ctx: _Ctx, key: str, v: Any) -> DataSet:
    from .data.layouts import LAYOUTS

    if isinstance(v, str):
        v = {"name": v}
    if not isinstance(v, Mapping):
        raise ctx.err(key, f"must be a data set name ({', '.join(DATASETS)}) or a mapping with keys "
                           f"{', '.join(SET_KEYS)}; got {_show(v)}")
    _check_keys(ctx, key, v, SET_KEYS)
    name = v.get("name")
    base: dict[str, Any] = {}
    if name is not None:
        if name not in DATASETS:
            hint = difflib.get_close_matches(str(name), list(DATASETS), 1)
            raise ctx.err(f"{key}.name", f"unknown data set {name!r}; {'did you mean ' + repr(hint[0]) + '? ' if hint else ''}"
                                         f"known: {', '.join(DATASETS)}")
        base = {k: val for k, val in DATASETS[name].items() if k in SET_KEYS}
        if DATASETS[name].get("synthetic"):
            for k in ("folder", "layout"):
                if v.get(k) is not None:
                    raise ctx.err(f"{key}.{k}", f"the synthetic set {name!r} is generated in memory; it has no {k}")
    merged = {**base, **{k: val for k, val in v.items() if k != "name"}}
    folder = merged.get("folder")
    if name is None and folder is None:
        raise ctx.err(key, f"needs a name ({', '.join(DATASETS)}) or a folder")
    if folder is not None and not isinstance(folder, str):
        raise ctx.err(f"{key}.folder", f"must be a path string, got {_show(folder)}")
    layout = merged.get("layout") or "auto"
    if layout != "auto" and layout not in LAYOUTS:
        raise ctx.err(f"{key}.layout", f"unknown layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    scenes = _ids(ctx, f"{key}.scenes", merged.get("scenes"))
    levels = _ids(ctx, f"{key}.levels", merged.get("levels"))
    max_images = _int(ctx, f"{key}.max_images", merged.get("max_images", 0), 0)
    return DataSet(name, folder, layout, scenes, levels, max_images)


def _data(ctx: _Ctx, kind: str, d: Any) -> DataSpec:
    _check_keys(ctx, "data", d, DATA_KEYS, ("train",))
    root = d.get("root")
    if root is not None and not isinstance(root, str):
        raise ctx.err("data.root", f"must be a path string or null, got {_show(root)}")
    tr = d["train"]
    if kind == "unpaired" and isinstance(tr, Mapping) and ("hazy" in tr or "clear" in tr):
        _check_keys(ctx, "data.train", tr, ("hazy", "clear"), ("hazy", "clear"))
        train: DataSet | UnpairedData = UnpairedData(_data_set(ctx, "data.train.hazy", tr["hazy"]),
                                                     _data_set(ctx, "data.train.clear", tr["clear"]))
    elif kind == "unpaired":
        train = UnpairedData(_data_set(ctx, "data.train", tr))
    else:
        train = _data_set(ctx, "data.train", tr)
    test = None if d.get("test") is None else _data_set(ctx, "data.test", d["test"])
    return DataSpec(root, train, test, _bool(ctx, "data.cache", d.get("cache", True)))


def _train_config(ctx: _Ctx, kind: str, d: Any) -> tuple[Any, bool]:
    if kind == "paired":
        from .train.config import PairedTrainConfig as cls
    else:
        from .train.unpaired import UnpairedTrainConfig as cls
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
    arguments are checked by :func:`prepare`. Raises :class:`LaunchError` naming ``source`` and the key.
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

    def kwargs(key: str) -> dict[str, Any]:
        v = raw.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
            raise ctx.err(key, f"must be a mapping of keyword arguments, got {_show(v)}")
        return copy.deepcopy(dict(v))

    if kind == "paired":
        from .models import MODELS

        model = raw["model"]
        if model not in MODELS:
            raise ctx.err("model", f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
        loss = raw.get("loss") or "l1"
        if loss not in LOSSES:
            raise ctx.err("loss", f"must be one of {', '.join(LOSSES)}, got {_show(loss)}")
        loss_kwargs = kwargs("loss_kwargs")
        if loss == "l1" and loss_kwargs:
            raise ctx.err(f"loss_kwargs.{next(iter(loss_kwargs))}", "loss: l1 takes no arguments")
        spec.model, spec.model_kwargs, spec.loss = model, kwargs("model_kwargs"), loss
        spec.loss_kwargs = (_cr_kwargs(ctx, loss_kwargs) if loss == "cr" else
                            _iicl_kwargs(ctx, loss_kwargs) if loss == "iicl" else {})
        spec.warmup_steps = _int(ctx, "warmup_steps", raw.get("warmup_steps") or 0, 0)
        if spec.warmup_steps and model not in STAGED_MODELS:
            raise ctx.err("warmup_steps", f"model {model!r} has no training stages (only {', '.join(STAGED_MODELS)})")
    else:
        from .methods import METHODS

        method = raw["method"]
        if method not in METHODS:
            raise ctx.err("method", f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
        spec.method = method
        spec.method_kwargs = {"seed": cfg.seed, **kwargs("method_kwargs")}
    return spec


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str], source: str = "<run spec>") -> dict[str, Any]:
    """A deep copy of ``raw`` with ``KEY.SUB=VALUE`` overrides applied (values parsed as YAML).

    Missing intermediate mappings are created; under ``data``, a set given by name (``train:
    sots-train``) becomes ``{name: sots-train}`` so its keys can be overridden.
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise LaunchError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.steps=10")
        value = _yaml_load(text, f"--set {item!r}") if text.strip() else None
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif isinstance(nxt, str) and parts[0] == "data" and i >= 1:
                nxt = node[p] = {"name": nxt}
            elif not isinstance(nxt, dict):
                raise LaunchError(f"{source} (--set {key}): {'.'.join(parts[: i + 1])} is {_show(nxt)}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


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


# --------------------------------------------------------------------------------------------
# distributed environment (read only: the trainers initialise torch.distributed)
# --------------------------------------------------------------------------------------------
def _dist_context():
    """torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, parsed by the trainers' own
    :meth:`~dehazelab.train.distributed.DistContext.from_env` (a malformed value stops with an error
    naming the variable instead of silently running as rank 0)."""
    from .train.distributed import DistContext  # imports torch: only when a run needs it

    try:
        return DistContext.from_env()
    except ValueError as e:
        raise LaunchError(f"torchrun environment: {e}") from None


def rank() -> int:
    """This process's global rank under ``torchrun`` (``$RANK``), 0 otherwise."""
    return _dist_context().rank


def world_size() -> int:
    """The number of ranks under ``torchrun`` (``$WORLD_SIZE``), 1 otherwise."""
    return _dist_context().world_size


def _say(msg: str) -> None:
    if rank() == 0:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _repo_path(p: str) -> Path:
    q = Path(p).expanduser()
    return (q if q.is_absolute() else paths.ROOT / q).resolve()


class _Root:
    """The data root, resolved on first need (a run on synthetic data needs none)."""

    def __init__(self, ctx: _Ctx, given: str | None):
        self.ctx, self.given, self._value = ctx, given, None

    def get(self, for_key: str, folder: str) -> Path:
        if self._value is not None:
            return self._value
        if self.given is not None:
            root = _repo_path(self.given)
            if not root.is_dir():
                raise self.ctx.err("data.root", f"{root} is not a folder (relative paths are taken from the "
                                                f"repository root {paths.ROOT})")
        else:
            try:
                found = paths.data_root()
            except FileNotFoundError as e:
                raise self.ctx.err("data.root", f"null, so the project's data setting is used, but {e}; fix "
                                                f"${paths.DATA_ENV} or set data.root") from None
            if found is None:
                default = (paths.ROOT / ".." / "shared" / "data").resolve()
                raise self.ctx.err(for_key, f"needs the data folder holding {folder}/, but data.root is null and no "
                                            f"data is configured: set ${paths.DATA_ENV} (or data.root in the spec, "
                                            f"or --set data.root=DIR) to that folder (default: {default}, missing)")
            root = found
        self._value = root
        return root


def _select(ctx: _Ctx, key: str, s: DataSet, root: _Root, paired: bool) -> tuple[list, dict[str, Any]]:
    """The pairs of a data set, filtered, with a JSON-friendly description."""
    from .data.layouts import detect_layout, find_pairs

    info: dict[str, Any] = {"set": s.to_dict()}
    if s.synthetic:
        from .data.synthetic import SOURCE, SPLIT, synthetic_pairs

        pairs = list(synthetic_pairs(seed=0, size=128, levels=3, scenes=SPLIT[s.synthetic]))
        info.update(source=SOURCE, folder=None, layout=None)
    else:
        assert s.folder is not None
        q = Path(s.folder).expanduser()
        folder = q if q.is_absolute() else root.get(key, s.folder) / q
        if not folder.is_dir() and s.name in DATASETS and s.folder == DATASETS[s.name].get("folder"):
            # a named set may also be pointed at its folder itself (data.root = .../sots-indoor)
            base = root.get(key, s.folder)
            try:
                if detect_layout(base) == s.layout:
                    folder = base
            except DataError:
                pass
        if not folder.is_dir():
            where = f"data.root = {root.get(key, s.folder)}" if not q.is_absolute() else "an absolute folder"
            raise ctx.err(key, f"{folder} is not a folder ({where}); set data.root (or ${paths.DATA_ENV}) to the "
                               f"folder holding {s.folder}/, or change {key}")
        try:
            pairs = find_pairs(folder, layout=None if s.layout == "auto" else s.layout)
        except DataError as e:
            raise ctx.err(key, str(e)) from None
        info.update(source=str(folder), folder=str(folder), layout=pairs[0].layout if pairs else s.layout)
    if s.scenes is not None:
        wanted = _expand_ids(s.scenes)
        have = {str(p.scene) for p in pairs}
        missing = [w for w in wanted if w not in have]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise ctx.err(f"{key}.scenes", f"no images of scene(s) {', '.join(missing[:5])}{more} in {info['source']}")
        pairs = filter_pairs(pairs, scenes=wanted)
    if s.levels is not None:
        pairs = filter_pairs(pairs, levels=s.levels)
        if not pairs:
            raise ctx.err(f"{key}.levels", f"no image of haze level(s) {', '.join(s.levels)} in {info['source']}")
    pairs = spread(pairs, s.max_images)
    if not pairs:
        raise ctx.err(key, f"selects no images in {info['source']}")
    if paired:
        bad = next((p for p in pairs if p.clear is None), None)
        if bad is not None:
            raise ctx.err(key, f"{bad.hazy} has no ground truth (layout {info['layout']}); a paired set is needed here")
    scenes = sorted({str(p.scene) for p in pairs}, key=_natural)
    info.update(n_pairs=len(pairs), n_scenes=len(scenes), first_scene=scenes[0], last_scene=scenes[-1])
    return pairs, info


def _natural(s: str):
    from .data.layouts import natural_key

    return natural_key(s)


def _image_hw(x: Any) -> tuple[int, int]:
    if isinstance(x, (str, Path)):
        from PIL import Image

        try:
            with Image.open(x) as im:
                w, h = im.size
        except OSError as e:
            raise DataError(f"{x}: cannot read the image: {e}") from None
        return h, w
    return tuple(int(n) for n in x.shape[:2])  # type: ignore[return-value]


def _check_crop(ctx: _Ctx, key: str, images: Sequence[Any], crop: int | None, crop_key: str) -> None:
    if crop is None:
        return
    for x in images:
        try:
            h, w = _image_hw(x)
        except DataError as e:
            raise ctx.err(key, str(e)) from None
        if h < crop or w < crop:
            name = x if isinstance(x, (str, Path)) else "an image"
            raise ctx.err(crop_key, f"{crop} is larger than {name} ({h}x{w}) of {key}")


def _unpaired_items(ctx: _Ctx, d: UnpairedData, root: _Root) -> tuple[list, list, dict[str, Any]]:
    if d.clear is None:
        pairs, info = _select(ctx, "data.train", d.hazy, root, paired=True)
        try:
            hazy, clear, hazy_scenes, clear_scenes = scene_halves(pairs)
        except ValueError as e:
            raise ctx.err("data.train", f"{e} in {info['source']}") from None
        info = {"split": "scene-halves (notebook 02)", "from": info, "hazy_scenes": [hazy_scenes[0], hazy_scenes[-1]],
                "clear_scenes": [clear_scenes[0], clear_scenes[-1]]}
    else:
        hpairs, hinfo = _select(ctx, "data.train.hazy", d.hazy, root, paired=False)
        cpairs, cinfo = _select(ctx, "data.train.clear", d.clear, root, paired=False)
        hazy = list(hpairs)
        seen: dict[str, Any] = {}
        for p in cpairs:  # paired sets give their distinct clear images, image folders their images
            item = p if p.clear is not None else p.hazy
            src = p.clear if p.clear is not None else p.hazy
            seen.setdefault(str(src) if isinstance(src, (str, Path)) else f"{p.scene}", item)
        clear = list(seen.values())
        own = {str(p.clear) for p in hpairs if isinstance(p.clear, (str, Path))}
        shared = own & {str(getattr(c, "clear", c)) for c in clear}
        if shared:
            warnings.warn(f"data.train: {len(shared)} clear image(s) of data.train.clear are the ground truths of "
                          f"hazy images of data.train.hazy (e.g. {sorted(shared)[0]}): the training is not unpaired",
                          UserWarning, stacklevel=3)
        info = {"split": "hazy/clear sets", "hazy": hinfo, "clear": cinfo}
    info.update(n_hazy=len(hazy), n_clear=len(clear))
    return hazy, clear, info


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Prepared:
    """Everything a run needs, built and checked: pass to the trainer."""

    spec: RunSpec
    cfg: Any
    train_set: Any
    test_set: Any
    model: Any = None
    loss_fn: Any = None
    model_spec: dict[str, Any] | None = None
    method: Any = None
    resolved: dict[str, Any] = dataclasses.field(default_factory=dict)


def _build_loss(ctx: _Ctx, spec: RunSpec, local_batch: int) -> tuple[Any, str | None]:
    import torch

    if spec.loss == "l1":
        return None, None
    from .losses.cr import ContrastiveRegularization, CRLoss

    kw = spec.loss_kwargs
    if spec.loss == "iicl":
        return _build_iicl_loss(ctx, kw)
    extra_from_batch = kw["n_neg"] > 1 or (kw["n_pos"] > 1 and kw["extra_positives"] == "other_clear")
    if extra_from_batch and local_batch < 2:
        raise ctx.err("loss_kwargs", f"n_pos={kw['n_pos']}, n_neg={kw['n_neg']} take extra samples from other images "
                                     f"of the batch, which has {local_batch} image(s) per rank; raise train.batch_size")
    if kw["beta"] == 0:
        return CRLoss(cr=None, beta=0.0, n_pos=kw["n_pos"], n_neg=kw["n_neg"],
                      extra_positives=kw["extra_positives"]), "none (beta 0: L1 only)"
    vgg, label = _vgg(ctx, kw, "CR")
    cr = ContrastiveRegularization(vgg=vgg, ablation=kw["ablation"], imagenet_norm=kw["imagenet_norm"])
    cr.vgg_label = label
    # extra samples come from the loss's own generator (the trainer checkpoints its state), seeded
    # 10 000 + seed as the notebooks always did, so a run's draws do not depend on anything else
    # drawn from the global RNG; under torchrun each rank gets its own stream
    gen = torch.Generator().manual_seed(10_000 + spec.train.seed + 1_000_003 * rank())
    loss = CRLoss(cr=cr, beta=kw["beta"], n_pos=kw["n_pos"], n_neg=kw["n_neg"],
                  extra_positives=kw["extra_positives"], generator=gen)
    return loss, label


def _vgg(ctx: _Ctx, kw: Mapping[str, Any], what: str) -> tuple[Any, str]:
    from .models.vgg import vgg19_features

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vgg, label = vgg19_features(weights=kw["vgg_weights"], path=kw["vgg_path"], seed=kw["vgg_seed"])
        except FileNotFoundError as e:
            key = "loss_kwargs.vgg_path" if kw["vgg_path"] else "loss_kwargs.vgg_weights"
            raise ctx.err(key, f"{e} (vgg_weights: auto falls back to a seeded random VGG-19)") from None
    for w in caught:
        _say(f"WARNING: {w.message}")
    _say(f"{what} uses VGG-19: {label}")
    return vgg, label


def _build_iicl_loss(ctx: _Ctx, kw: Mapping[str, Any]) -> tuple[Any, str | None]:
    """IICL's objective (docs/methods.md §4): the VGG-19 is built only when a contrastive term is on."""
    from .losses.cr import ContrastiveRegularization
    from .losses.iicl import IICLLoss, IntraContrast

    if kw["beta_inter"] == 0 and kw["beta_intra"] == 0:
        return IICLLoss(beta_inter=0.0, beta_intra=0.0, lambda_prm=kw["lambda_prm"]), "none (no contrastive term)"
    vgg, label = _vgg(ctx, kw, "IICL")
    intra = IntraContrast(embed="vgg", vgg=vgg, layer=kw["intra_layer"], tau=kw["tau"], patch=kw["intra_patch"],
                          k=kw["intra_k"], by=kw["intra_by"])
    loss = IICLLoss(cr=ContrastiveRegularization(vgg=vgg), intra=intra, beta_inter=kw["beta_inter"],
                    beta_intra=kw["beta_intra"], lambda_prm=kw["lambda_prm"])
    return loss, label


def prepare(spec: RunSpec) -> Prepared:
    """Resolve the data, build the datasets, model/loss or method; every error is a :class:`LaunchError`.

    Seeds the global RNGs with ``train.seed`` first (deterministic initial weights on every rank).
    """
    import torch

    from .data.datasets import PairedDataset, UnpairedDataset
    from .repro import seed_everything

    ctx = _Ctx(spec.source, spec.overrides)
    cfg = spec.train
    ws = world_size()
    if cfg.batch_size % ws:
        raise ctx.err("train.batch_size", f"{cfg.batch_size} is the global batch and must be divisible by the "
                                          f"{ws} ranks of this torchrun")
    root = _Root(ctx, spec.data.root)
    resolved: dict[str, Any] = {"world_size": ws, "batch_per_rank": cfg.batch_size // ws}

    if spec.kind == "paired":
        pairs, info = _select(ctx, "data.train", spec.data.train, root, paired=True)  # type: ignore[arg-type]
        _check_crop(ctx, "data.train", [p.hazy for p in pairs], cfg.crop, "train.crop")
        train_set = PairedDataset(pairs, crop=cfg.crop, augment=cfg.augment, seed=cfg.seed, cache=spec.data.cache)
    else:
        hazy, clear, info = _unpaired_items(ctx, spec.data.train, root)  # type: ignore[arg-type]
        _check_crop(ctx, "data.train", [getattr(x, "hazy", x) for x in hazy] + [getattr(x, "clear", x) for x in clear],
                    cfg.crop, "train.crop")
        train_set = UnpairedDataset(hazy, clear, crop=cfg.crop, seed=cfg.seed, augment=cfg.augment,
                                    cache=spec.data.cache)
    resolved["train_data"] = info
    test_set = None
    if spec.data.test is not None:
        test_pairs, test_info = _select(ctx, "data.test", spec.data.test, root, paired=True)
        test_info["images"] = [p.name for p in test_pairs] if len(test_pairs) <= 1000 else None
        test_set = PairedDataset(test_pairs, cache=spec.data.cache)
        resolved["test_data"] = test_info
    if root._value is not None:
        resolved["data_root"] = str(root._value)
    if len(train_set) < cfg.batch_size:
        raise ctx.err("train.batch_size", f"{cfg.batch_size} is more than the {len(train_set)} training items")
    steps_per_epoch = len(train_set) // cfg.batch_size
    resolved["steps_per_epoch"] = steps_per_epoch
    if spec.lr_every_epoch:
        try:
            cfg = cfg.replace(lr_every=steps_per_epoch)
        except ValueError as e:
            raise ctx.err("train.lr_every", f"'epoch' = {steps_per_epoch} steps ({len(train_set)} items // batch "
                                            f"{cfg.batch_size}): {e}") from None
    resolved["train_config"] = cfg.to_dict()

    seed_everything(cfg.seed, cfg.threads)
    prep = Prepared(spec=spec, cfg=cfg, train_set=train_set, test_set=test_set, resolved=resolved)
    if spec.kind == "paired":
        from .models import build
        from .train.checkpoint import validate_model_spec

        try:
            prep.model_spec = validate_model_spec({"model": spec.model, "kwargs": spec.model_kwargs})
            prep.model = build(spec.model, **spec.model_kwargs)
        except (TypeError, ValueError, KeyError) as e:
            raise ctx.err("model_kwargs", f"cannot build model {spec.model!r}: {e}") from None
        n_params = sum(p.numel() for p in prep.model.parameters() if p.requires_grad)
        if not n_params:
            raise ctx.err("model", f"{spec.model!r} has no trainable parameters")
        prep.loss_fn, vgg = _build_loss(ctx, spec, cfg.batch_size // ws)
        resolved.update(model_spec=prep.model_spec, n_params=n_params, vgg=vgg,
                        loss_fn="l1_loss" if prep.loss_fn is None else type(prep.loss_fn).__qualname__)
    else:
        from .methods import build_method

        try:
            prep.method = build_method(spec.method, **spec.method_kwargs)
        except (TypeError, ValueError, KeyError) as e:
            raise ctx.err("method_kwargs", f"cannot build method {spec.method!r}: {e}") from None
        resolved.update(model_spec=prep.method.model_spec(), n_params=prep.method.n_params(),
                        method_hparams=prep.method.hparams())
    resolved["torch"] = torch.__version__
    return prep


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
    """``results/runs/<spec file stem>`` under :func:`dehazelab.paths.results_dir` (the repository's
    ``results/`` unless ``$DEHAZELAB_RESULTS`` is set) — never relative to the working directory."""
    return paths.results_dir() / "runs" / Path(spec_path).stem


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
    from .train import unpaired as unpaired_train

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
    if out_dir is None:
        if not Path(spec.source).suffix:
            raise LaunchError(f"{spec.source}: no spec file name to derive the output folder from; pass out_dir")
        out = default_out_dir(spec.source)
    else:
        out = Path(out_dir)
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
    from .train.checkpoint import RunFolderInUse

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
