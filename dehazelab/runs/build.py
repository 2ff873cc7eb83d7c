"""Building a run: resolve a run spec's data, build its datasets and its model and loss or method.

:func:`prepare` turns a validated :class:`~dehazelab.runs.spec.RunSpec` into a :class:`Prepared` (the
datasets, the model/loss or method, the resolved settings recorded in ``run_spec.json``) that
:mod:`dehazelab.runs.execute` trains. Everything that needs the data or the networks is checked here,
before training starts: the folders, the scene/level selections, the image sizes against the crop,
the global batch against the ranks and the training set, the model/method arguments. Every error is
a :class:`~dehazelab.runs.spec.LaunchError` naming the spec file and the key. The data selection is
documented with the spec format (:mod:`dehazelab.runs.spec`).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import paths
from ..data.errors import DataError
from ..data.selection import filter_pairs, scene_halves, spread
from .checks import LaunchError, _Ctx, _expand_ids
from .data_spec import DATASETS, DataSet, UnpairedData
from .spec import RunSpec

__all__ = ["Prepared", "prepare", "rank", "test_pairs", "unpaired_train", "world_size"]


# --------------------------------------------------------------------------------------------
# distributed environment (read only: the trainers initialise torch.distributed)
# --------------------------------------------------------------------------------------------
def _dist_context():
    """torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, parsed by the trainers' own
    :meth:`~dehazelab.train.distributed.DistContext.from_env` (a malformed value stops with an error
    naming the variable instead of silently running as rank 0)."""
    from ..train.distributed import DistContext  # imports torch: only when a run needs it

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


def _folder(ctx: _Ctx, key: str, s: DataSet, root: _Root) -> Path:
    """The folder of a data set on disk (``data.root`` / ``folder``, or ``folder`` if absolute)."""
    from ..data.layouts import detect_layout

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
    return folder


def _all_pairs(ctx: _Ctx, key: str, s: DataSet, root: _Root) -> tuple[list, dict[str, Any]]:
    """Every pair of a data set's folder (or synthetic set) before its selection, and where they came from."""
    info: dict[str, Any] = {"set": s.to_dict()}
    if s.synthetic:
        from ..data.synthetic import SOURCE, SPLIT, synthetic_pairs

        pairs = list(synthetic_pairs(seed=0, size=128, levels=3, scenes=SPLIT[s.synthetic]))
        info.update(source=SOURCE, folder=None, layout=None)
        return pairs, info
    from ..data.layouts import find_pairs

    folder = _folder(ctx, key, s, root)
    try:
        pairs = find_pairs(folder, layout=None if s.layout == "auto" else s.layout)
    except DataError as e:
        raise ctx.err(key, str(e)) from None
    info.update(source=str(folder), folder=str(folder), layout=pairs[0].layout if pairs else s.layout)
    return pairs, info


def _select(ctx: _Ctx, key: str, s: DataSet, root: _Root, paired: bool) -> tuple[list, dict[str, Any]]:
    """The pairs of a data set, filtered, with a JSON-friendly description."""
    pairs, info = _all_pairs(ctx, key, s, root)
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
    from ..data.layouts import natural_key

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
                          UserWarning, stacklevel=4)  # the caller of prepare()
        info = {"split": "hazy/clear sets", "hazy": hinfo, "clear": cinfo}
    info.update(n_hazy=len(hazy), n_clear=len(clear))
    return hazy, clear, info


def test_pairs(spec: RunSpec) -> tuple[list, dict[str, Any]]:
    """The test pairs a run of ``spec`` is scored on and their description, selected exactly as the
    run selects them (notebooks show pictures of the same images their runs' numbers come from)."""
    if spec.data.test is None:
        raise ValueError(f"{spec.source}: the run has no data.test")
    ctx = _Ctx(spec.source, spec.overrides)
    pairs, info = _select(ctx, "data.test", spec.data.test, _Root(ctx, spec.data.root), paired=True)
    info["images"] = [p.name for p in pairs]
    return pairs, info


def unpaired_train(spec: RunSpec) -> tuple[list, list, dict[str, Any]]:
    """``(hazy, clear, description)``: the training images of an unpaired run, split as the run splits them."""
    if spec.kind != "unpaired":
        raise ValueError(f"{spec.source}: a {spec.kind} run has paired training data")
    ctx = _Ctx(spec.source, spec.overrides)
    return _unpaired_items(ctx, spec.data.train, _Root(ctx, spec.data.root))  # type: ignore[arg-type]


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
    from ..losses.cr import ContrastiveRegularization, CRLoss

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
    from ..models.vgg import vgg19_features

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
    from ..losses.cr import ContrastiveRegularization
    from ..losses.iicl import IICLLoss, IntraContrast

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

    from ..repro import seed_everything

    ctx = _Ctx(spec.source, spec.overrides)
    cfg = spec.train
    ws = world_size()
    if cfg.batch_size % ws:
        raise ctx.err("train.batch_size", f"{cfg.batch_size} is the global batch and must be divisible by the "
                                          f"{ws} ranks of this torchrun")
    resolved: dict[str, Any] = {"world_size": ws, "batch_per_rank": cfg.batch_size // ws}
    train_set, test_set = _datasets(ctx, spec, resolved)
    cfg = _epoch_config(ctx, spec, len(train_set), resolved)
    resolved["train_config"] = cfg.to_dict()

    seed_everything(cfg.seed, cfg.threads)
    prep = Prepared(spec=spec, cfg=cfg, train_set=train_set, test_set=test_set, resolved=resolved)
    if spec.kind == "paired":
        _build_model(ctx, prep, cfg.batch_size // ws)
    else:
        _build_method(ctx, prep)
    resolved["torch"] = torch.__version__
    return prep


def _datasets(ctx: _Ctx, spec: RunSpec, resolved: dict[str, Any]) -> tuple[Any, Any]:
    """The training and test datasets of ``spec`` (test: ``None`` without ``data.test``); what was
    selected goes into ``resolved``."""
    from ..data.datasets import PairedDataset, UnpairedDataset

    cfg = spec.train
    root = _Root(ctx, spec.data.root)
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
    return train_set, test_set


def _epoch_config(ctx: _Ctx, spec: RunSpec, n_items: int, resolved: dict[str, Any]) -> Any:
    """The trainer config with ``lr_every: epoch`` resolved, once the training set's size is known."""
    cfg = spec.train
    if n_items < cfg.batch_size:
        raise ctx.err("train.batch_size", f"{cfg.batch_size} is more than the {n_items} training items")
    steps_per_epoch = n_items // cfg.batch_size
    resolved["steps_per_epoch"] = steps_per_epoch
    if spec.lr_every_epoch:
        try:
            cfg = cfg.replace(lr_every=steps_per_epoch)
        except ValueError as e:
            raise ctx.err("train.lr_every", f"'epoch' = {steps_per_epoch} steps ({n_items} items // batch "
                                            f"{cfg.batch_size}): {e}") from None
    return cfg


def _build_model(ctx: _Ctx, prep: Prepared, local_batch: int) -> None:
    """The model and loss of a paired run, into ``prep``."""
    from ..models import build
    from ..train.checkpoint import validate_model_spec

    spec = prep.spec
    try:
        prep.model_spec = validate_model_spec({"model": spec.model, "kwargs": spec.model_kwargs})
        prep.model = build(spec.model, **spec.model_kwargs)
    except (TypeError, ValueError, KeyError) as e:
        raise ctx.err("model_kwargs", f"cannot build model {spec.model!r}: {e}") from None
    n_params = sum(p.numel() for p in prep.model.parameters() if p.requires_grad)
    if not n_params:
        raise ctx.err("model", f"{spec.model!r} has no trainable parameters")
    prep.loss_fn, vgg = _build_loss(ctx, spec, local_batch)
    prep.resolved.update(model_spec=prep.model_spec, n_params=n_params, vgg=vgg,
                         loss_fn="l1_loss" if prep.loss_fn is None else type(prep.loss_fn).__qualname__)


def _build_method(ctx: _Ctx, prep: Prepared) -> None:
    """The method (networks, optimisers) of an unpaired run, into ``prep``."""
    from ..methods import build_method

    spec = prep.spec
    try:
        prep.method = build_method(spec.method, **spec.method_kwargs)
    except (TypeError, ValueError, KeyError) as e:
        raise ctx.err("method_kwargs", f"cannot build method {spec.method!r}: {e}") from None
    prep.resolved.update(model_spec=prep.method.model_spec(), n_params=prep.method.n_params(),
                         method_hparams=prep.method.hparams())
