"""Run a registered model on images: load (name, weights) -> module, numpy image -> numpy image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import models as registry


def registry_entry(name: str):
    """The registry entry of ``name``; an unknown name exits with the list of known ones."""
    entry = registry.MODELS.get(name)
    if entry is None:
        raise SystemExit(f"unknown model {name!r}; known: {', '.join(sorted(registry.MODELS))}")
    return entry


def load_model(name: str, weights: str | Path | None = None, device=None):
    """Build ``name`` from the registry; with ``weights`` load a checkpoint (``weights_only=True``).

    A checkpoint written by the trainers records the constructor arguments, so ``weights`` alone
    rebuilds the network; a bare state dict is accepted too (then the registry defaults are used).
    Before any memory is allocated for the network, the recorded arguments are tried on the
    ``meta`` device and the resulting shapes compared with the stored tensors, which must be
    finite: a file whose record says e.g. ``ngf: 4096`` is an error, not a multi-GB allocation.
    """
    import torch

    from .train.checkpoint import CheckpointError, read_weights_only

    entry = registry_entry(name)
    kwargs: dict = {}
    state = None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SystemExit(f"{path}: weights file not found")
        try:
            ckpt = read_weights_only(path)
        except CheckpointError as exc:
            raise SystemExit(str(exc)) from None
        if isinstance(ckpt, dict) and "model_spec" in ckpt and "model" in ckpt:
            spec = ckpt.get("model_spec") or {}
            if not isinstance(spec, dict) or spec.get("model") not in (None, name):
                raise SystemExit(f"{path}: checkpoint is for model {spec.get('model')!r}, not {name!r}")
            kwargs = dict(spec.get("kwargs") or {})
            state = ckpt["model"]
        elif isinstance(ckpt, dict):
            state = ckpt
        else:
            raise SystemExit(f"{path}: not a checkpoint dict")
        _check_state(state, path)
        try:
            with torch.device("meta"):
                probe = entry.build(**kwargs)
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"{path}: its recorded arguments {kwargs} do not build model {name!r}: {exc}") from None
        _check_shapes(probe.state_dict(), state, path, name, kwargs)
    elif entry.needs_weights:
        raise SystemExit(f"model {name!r} needs --weights (e.g. results/small/.../{name}_small.pt)")
    model = entry.build(**kwargs)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise SystemExit(f"{weights}: weights do not fit model {name!r}: {exc}") from None
    if device is None:
        device = _default_device()
    else:
        from .repro import check_device

        try:
            device = check_device(str(device))
        except ValueError as exc:
            raise SystemExit(f"--device {exc}") from None
    return model.to(device).eval()


def _check_state(state, path: Path) -> None:
    import torch

    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise SystemExit(f"{path}: the weights are not a state dict (name -> tensor)")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise SystemExit(f"{path}: {k} is a {type(v).__name__}, not a tensor")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise SystemExit(f"{path}: {k} holds NaN or infinite values (a diverged run?): refusing to use it")


def _check_shapes(want: dict, state: dict, path: Path, name: str, kwargs: dict) -> None:
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and tuple(want[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape(s) differ, e.g. {k}: file {tuple(state[k].shape)}, "
                         f"model {tuple(want[k].shape)}")
        if missing:
            parts.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        raise SystemExit(f"{path}: weights do not fit model {name!r} built with {kwargs or 'its defaults'}: "
                         + "; ".join(parts))


def export_weights(model, model_spec: dict, path) -> Path:
    """Write a small inference checkpoint (weights + constructor record, no optimiser state).

    ``python -m dehazelab dehaze --model NAME --weights PATH`` rebuilds the model from it alone.
    """
    from .io import save_torch
    from .train.checkpoint import check_plain, validate_model_spec

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt = {"format": "dehazelab-weights-1", "model": state, "model_spec": validate_model_spec(model_spec)}
    check_plain(ckpt, "weights")
    return save_torch(ckpt, Path(path))


def _default_device():
    from .repro import pick_device

    return pick_device("auto")


def dehaze_array(model, img: np.ndarray) -> np.ndarray:
    """Dehaze one HxWx3 float image in [0,1] with a model from :func:`load_model`, whole.

    Networks run padded to their size multiple and to at least
    :data:`dehazelab.tiling.MIN_SIDE` pixels, cropped back (:func:`dehazelab.tiling.run_whole`), so
    any size works; an image whose sides are already such multiples runs unpadded. Memory grows with
    the image: for large images use :func:`dehazelab.tiling.dehaze_auto`, which the ``dehaze``
    command line runs.
    """
    import torch

    from .tiling import _is_dcp, run_whole

    if not _is_dcp(model):
        return run_whole(model, img)
    device = next((p.device for p in model.parameters()), None) or next(
        (b.device for b in model.buffers()), torch.device("cpu")
    )
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)
    with torch.no_grad():
        y = model(x)
    return y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)
