"""Unpaired image-translation methods: one object per paper, trained by the ONE unpaired loop.

A method object owns its networks, optimisers, learning-rate schedulers and image pools, and knows
the paper's update order for one iteration; :func:`dehazelab.train.unpaired.train_unpaired` owns
everything else (data order, the crop switch of the decay phase, evaluation, checkpoints, resume,
divergence stop, history). Methods differ only here:

* :class:`~dehazelab.methods.cut.CUT` — CUT and FastCUT (``mode="cut"`` / ``"fastcut"``),
  ``docs/methods.md`` §2;
* :class:`~dehazelab.methods.cyclegan.CycleGAN` — CycleGAN (Zhu et al. 2017), the baseline of CUT's
  Table 1;
* :class:`~dehazelab.methods.cddgan.CDDGAN` — CDD-GAN (Chen et al., ECCV 2022), a labelled
  reconstruction (CycleGAN backbone + cross-encoder PatchNCE + NEGCUT-style negative generators),
  ``docs/methods.md`` §3.

The interface the loop relies on (:class:`UnpairedMethod`):

* ``nets`` (name → ``nn.Module``), ``optimizers`` (name → optimiser), ``schedulers``, ``pools``;
* ``train_step(batch, step) -> {name: float}`` — one iteration on ``{"hazy", "clear"}`` in [0, 1]
  (names are loss parts, logged as ``loss_<name>``, except those starting with ``gnorm_``
  (gradient norms) or ``stat_`` (other statistics));
  raises :class:`NonFiniteLoss` *before* the backward pass / optimiser step that would apply a
  non-finite loss or gradient;
* ``generator()`` — the hazy → clear generator (works in [-1, 1]); ``dehazer()`` wraps it in an
  :class:`~dehazelab.models.translator.ImageTranslator` ([0, 1] in and out) for evaluation;
* ``model_spec()`` — ``{"model": registry name, "kwargs": {...}}`` that rebuilds ``dehazer()``;
* ``hparams()`` — plain-python hyper-parameters (recorded in the run config; must match on resume);
* ``set_lr_schedule(fn)`` / ``step_schedulers()`` / ``lr()``; ``state_dict()`` / ``load_state_dict()``
  (networks, optimisers, schedulers, image-pool contents; tensors and plain values only).

Randomness inside a step (FastCUT's flip, patch positions, the image pool's coin flips) is drawn from
torch's *global* generator, which the training loop checkpoints — so resuming is exact.

``METHODS`` / :func:`build_method` are the registry by name (``"cut"``, ``"fastcut"``, ``"cyclegan"``,
``"cddgan"``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dehazelab.models.image_pool import ImagePool
from dehazelab.models.resnet_generator import to_pm1
from dehazelab.models.translator import ImageTranslator
from dehazelab import distributed as _dist
from dehazelab.divergence import NonFiniteLoss

__all__ = ["UnpairedMethod", "NonFiniteLoss", "METHODS", "build_method", "set_requires_grad"]


def set_requires_grad(nets: nn.Module | Iterable[nn.Module], flag: bool) -> None:
    """Switch ``requires_grad`` of all parameters (the official ``set_requires_grad``): frozen
    discriminators during the generator step accumulate no gradients and cost no weight-gradient work."""
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class UnpairedMethod:
    """Base class of the unpaired methods (see the module docstring for the contract).

    Subclasses set ``name`` (registry name of the dehazer), ``generator_name`` (key of the hazy →
    clear generator in ``nets``), fill ``nets`` / ``optimizers`` / ``pools`` in ``__init__`` and
    implement :meth:`train_step`, :meth:`hparams` and :meth:`model_spec`.
    """

    name: str = ""
    generator_name: str = "G"

    def __init__(self) -> None:
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.pools: dict[str, ImagePool] = {}

    # ---------------------------------------------------------------------- to implement
    def train_step(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        raise NotImplementedError

    def model_spec(self) -> dict[str, Any]:
        raise NotImplementedError

    # ---------------------------------------------------------------------- networks
    def generator(self) -> nn.Module:
        """The hazy → clear generator (inputs and outputs in [-1, 1])."""
        return self.nets[self.generator_name]

    def dehazer(self) -> ImageTranslator:
        """``generator()`` wrapped to map [0, 1] → [0, 1] (shares the weights; built by ``model_spec()``)."""
        return ImageTranslator(self.generator())

    @property
    def device(self) -> torch.device:
        return next(self.generator().parameters()).device

    def to(self, device: torch.device | str, memory_format: torch.memory_format | None = None) -> "UnpairedMethod":
        """Move networks, optimiser state and pooled images to ``device`` (parameters are moved in
        place, so the optimisers keep referring to them); ``memory_format=torch.channels_last``
        also converts the networks' 4-D parameters and buffers."""
        device = torch.device(device)
        for net in self.nets.values():
            net.to(device)
            if memory_format is not None:
                net.to(memory_format=memory_format)
        for opt in self.optimizers.values():
            for st in opt.state.values():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor) and k != "step":
                        st[k] = v.to(device)
        for pool in self.pools.values():
            pool.images = [im.to(device) for im in pool.images]
        return self

    def train(self, mode: bool = True) -> "UnpairedMethod":
        for net in self.nets.values():
            net.train(mode)
        return self

    def n_params(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in net.parameters()) for k, net in self.nets.items()}

    def _inputs(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(real_A, real_B)`` = (hazy, clear) moved to the generator's device and dtype (float32
        unless the networks were converted, e.g. to float64 for a rounding-free reference run) and
        mapped to [-1, 1]."""
        p = next(self.generator().parameters())
        return to_pm1(batch["hazy"].to(p.device, p.dtype)), to_pm1(batch["clear"].to(p.device, p.dtype))

    # ---------------------------------------------------------------------- learning rate
    def set_lr_schedule(self, lr_lambda: Callable[[int], float]) -> None:
        """One ``LambdaLR(optimizer, lr_lambda)`` per optimiser (``lr = lr₀ · lr_lambda(t)`` after
        ``t`` scheduler steps). Use a callable *object* so the scheduler's state stays plain."""
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) for k, opt in self.optimizers.items()}

    def step_schedulers(self) -> None:
        for sch in self.schedulers.values():
            sch.step()

    def lr(self) -> float:
        """Current learning rate of the first optimiser (all share one schedule)."""
        return float(next(iter(self.optimizers.values())).param_groups[0]["lr"])

    # ---------------------------------------------------------------------- guarded update
    @staticmethod
    def _check(what: str, value: torch.Tensor | float, logs: Mapping[str, float]) -> None:
        """Raise :class:`NonFiniteLoss` when ``value`` is NaN/inf.

        Data-parallel (``torch.distributed`` with W > 1): the value tested is the mean over ranks
        (a collective — every rank calls ``_check`` at the same points), so a non-finite value on any
        rank stops all of them together."""
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if _dist.is_active():
            v = float(_dist.all_reduce_mean_(torch.tensor([v], dtype=torch.float64, device=_dist.comm_device())))
        if v != v or v in (float("inf"), float("-inf")):
            raise NonFiniteLoss(what, v, logs)

    def _backward_step(self, loss: torch.Tensor, opt_names: Iterable[str], what: str,
                       logs: dict[str, float]) -> None:
        """Zero the grads of ``opt_names``, check ``loss``, backward, check the gradient norm of
        their parameters (logged as ``gnorm_<what>``), then step the optimisers in the given order.

        Data-parallel: after ``backward`` the gradients of these optimisers' parameters are averaged
        over ranks (:func:`dehazelab.distributed.average_gradients_` — DDP's mathematics done
        explicitly, because the alternating D / G / head updates with ``requires_grad`` toggling do
        not fit DDP's reducer), so every rank applies the update of the global batch and the logged
        norm is that of the averaged gradient (identical on all ranks)."""
        opt_names = list(opt_names)
        self._check(f"loss {what}", loss, logs)
        for k in opt_names:
            self.optimizers[k].zero_grad(set_to_none=True)
        loss.backward()
        if _dist.is_active():
            _dist.average_gradients_([p for k in opt_names for g in self.optimizers[k].param_groups
                                      for p in g["params"]])
        grads = [p.grad for k in opt_names for g in self.optimizers[k].param_groups for p in g["params"]
                 if p.grad is not None]
        gnorm = float(torch.nn.utils.get_total_norm(grads, norm_type=2.0)) if grads else 0.0
        logs[f"gnorm_{what}"] = gnorm
        self._check(f"gradient norm {what}", gnorm, logs)
        for k in opt_names:
            self.optimizers[k].step()

    # ---------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, schedulers and pooled images (tensors and plain values only)."""
        return {
            "method": self.name,
            "nets": {k: net.state_dict() for k, net in self.nets.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "schedulers": {k: sch.state_dict() for k, sch in self.schedulers.items()},
            "pools": {k: {"images": list(pool.images)} for k, pool in self.pools.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (strict for networks; schedulers only if both sides have them).

        Optimiser states are deep-copied first: ``Optimizer.load_state_dict`` would otherwise keep
        the given moment tensors (same device and dtype), so two methods could share them."""
        if state.get("method") not in (None, self.name):
            raise ValueError(f"state of method {state.get('method')!r} cannot be loaded into {self.name!r}")
        nets, opts = state["nets"], state["optimizers"]
        if set(nets) != set(self.nets) or set(opts) != set(self.optimizers):
            raise ValueError(f"state has nets {sorted(nets)} / optimizers {sorted(opts)}, "
                             f"expected {sorted(self.nets)} / {sorted(self.optimizers)}")
        for k, net in self.nets.items():
            net.load_state_dict(nets[k])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(copy.deepcopy(opts[k]))
        for k, sch in self.schedulers.items():
            if k in state.get("schedulers", {}):
                sch.load_state_dict(state["schedulers"][k])
        dev = self.device
        for k, pool in self.pools.items():
            pool.images = [torch.as_tensor(im).to(dev).clone() for im in state.get("pools", {}).get(k, {}).get("images", [])]


def _cut(**kw):
    from dehazelab.methods.cut import CUT

    return CUT(mode="cut", **kw)


def _fastcut(**kw):
    from dehazelab.methods.cut import CUT

    return CUT(mode="fastcut", **kw)


def _cyclegan(**kw):
    from dehazelab.methods.cyclegan import CycleGAN

    return CycleGAN(**kw)


def _cddgan(**kw):
    from dehazelab.methods.cddgan import CDDGAN

    return CDDGAN(**kw)


#: Registry of unpaired methods by name (builders take the method's keyword arguments).
METHODS: dict[str, Callable[..., UnpairedMethod]] = {"cut": _cut, "fastcut": _fastcut, "cyclegan": _cyclegan,
                                                     "cddgan": _cddgan}


def build_method(name: str, **kwargs: Any) -> UnpairedMethod:
    """Build a registered method by name; an unknown name lists the known ones."""
    try:
        builder = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return builder(**kwargs)
