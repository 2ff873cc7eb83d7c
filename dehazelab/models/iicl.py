"""IICL's progressive framework, PRM → ARM, around any dehazing backbone — a *reconstruction*.

Xu et al., ICASSP 2023 (methods §4): only the abstract is reachable, no code. Assumptions, tagged
with their source:

* [abstract] the framework is progressive: a light Pre-restore Module (PRM, ``prm.py``) makes a
  first restoration ``J₀``, an "Alternative Restored Module" (ARM) produces the final image; the
  framework is plug-in ("benefits various dehazing models"), so the ARM is an existing, unchanged
  dehazing network (the backbone).
* [abstract] "to facilitate end-to-end training": trained end to end; we add an optional PRM
  warm-up stage (:meth:`IICLNet.set_stage`), [§4.3 recommendation 1 supervises J₀ with L1, which
  makes a warm-up possible; that there *is* a warm-up is our choice].
* [§4.3.2] the ARM takes ``J₀`` (``arm_input="prestored"``) or ``[I, J₀]``
  (``arm_input="concat"``, default).
* [our choice] ``concat`` goes through a 1×1 conv adapter 6→3 in front of the *unchanged* 3-channel
  backbone (27 parameters, so every backbone plugs in without surgery and its own first layer —
  e.g. AECR-Net's FastDeconv whitening — stays as published). The adapter is initialised to pass
  ``J₀`` through (weights ``[0 | Id]``, bias 0), so at initialisation ``concat`` computes exactly
  what ``prestored`` computes and can only learn to add information from ``I``.
* [our choice] the ARM sees ``J₀`` clamped to [0, 1] (``j0_clamp=True``): the raw inversion can reach
  ``1/t_min`` = 10× the input range where ``t`` is small, which would wreck batch-statistics layers
  such as FastDeconv. The PRM's own L1 term uses the raw ``J₀``, so the clamp never starves it.
* [our choice] the output range is the backbone's: AECR-Net's Tanh output and AOD-Net's ReLU
  output are returned as they are (both are trained against [0, 1] targets; evaluation clamps).
* ``use_prm=False`` is the backbone alone (the "without PRM" ablation); the same loss still works.

**How the loss sees the PRM outputs.** The shared trainer calls ``out = model(hazy)`` and
``loss_fn(out, clear, hazy, batch)``. :meth:`IICLNet.forward` therefore returns the final image
tensor and attaches the intermediate results to it as the attribute ``out.iicl``, a dict
``{"j0", "t", "A", "stage"}`` (``j0``/``t``/``A`` are ``None`` without a PRM).
:class:`dehazelab.losses.iicl.IICLLoss` reads it. We chose this over caching ``self.last`` on the
model because the loss then needs no reference to the model: it keeps working on deep copies (the
trainer's ``measure_step_time`` trains a ``copy.deepcopy`` of the model) and can never pair an
output with a stale cache. Limits: any op that creates a new tensor (``out.clamp()``, ``.to()``,
``DataParallel``'s gather) drops the attribute, and ``IICLLoss`` then raises instead of silently
skipping its PRM term. :meth:`IICLNet.forward_all` returns the same things as a plain dict.

**Stages.** ``set_stage("prm")`` freezes the ARM (adapter + backbone, ``requires_grad=False``) and
makes ``forward`` return ``J₀`` without running the ARM (nothing of it would be trained, and
evaluation during warm-up then measures the PRM); ``IICLLoss`` uses only the PRM term in this stage.
``set_stage("joint")`` restores the ARM's previous ``requires_grad`` flags. Note that the shared
trainer builds its optimiser from the parameters that require grad *when it starts*, so a warm-up
followed by joint training is two trainer runs (the second initialised from the first's weights).
The stage is a mode like train/eval: it is not part of the ``state_dict``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from .prm import PreRestoreModule

__all__ = ["IICLNet", "build_iicl", "ARM_INPUTS", "STAGES", "BACKBONES"]

ARM_INPUTS = ("concat", "prestored")
STAGES = ("prm", "joint")
BACKBONES = ("aecrnet", "aodnet")


class IICLNet(nn.Module):
    """PRM → ARM. ``IICLNet(backbone, use_prm=True, prm_width=16, arm_input="concat")``.

    ``backbone``: any ``nn.Module`` mapping [B, 3, H, W] → [B, 3, H, W]. Keywords: ``t_min`` of the
    PRM (0.1), ``j0_clamp`` (clamp ``J₀`` to [0, 1] before the ARM, default True). ``forward(hazy)``
    returns the final image (with ``.iicl`` attached, see the module docstring);
    ``forward_all(hazy)`` returns ``{"out", "j0", "t", "A", "stage"}``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        use_prm: bool = True,
        prm_width: int = 16,
        arm_input: str = "concat",
        *,
        t_min: float = 0.1,
        j0_clamp: bool = True,
    ):
        super().__init__()
        if arm_input not in ARM_INPUTS:
            raise ValueError(f"arm_input must be one of {ARM_INPUTS}, got {arm_input!r}")
        self.backbone = backbone
        self.use_prm = bool(use_prm)
        self.arm_input = arm_input
        self.j0_clamp = bool(j0_clamp)
        self.prm = PreRestoreModule(width=prm_width, t_min=t_min) if self.use_prm else None
        self.adapter = None
        if self.use_prm and arm_input == "concat":
            self.adapter = nn.Conv2d(6, 3, kernel_size=1)
            with torch.no_grad():
                self.adapter.weight.zero_()
                self.adapter.weight[:, 3:, 0, 0] = torch.eye(3)
                self.adapter.bias.zero_()
        self._stage = "joint"
        self._saved_flags: dict[str, bool] | None = None

    # --- stages -----------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return self._stage

    def arm_parameters(self):
        """Named parameters of the ARM (the input adapter, if any, and the backbone)."""
        for prefix, mod in (("adapter", self.adapter), ("backbone", self.backbone)):
            if mod is not None:
                for n, p in mod.named_parameters():
                    yield f"{prefix}.{n}", p

    def set_stage(self, stage: str) -> "IICLNet":
        """``"prm"``: freeze the ARM, forward returns ``J₀``; ``"joint"``: everything as before."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if stage == "prm" and not self.use_prm:
            raise ValueError("stage 'prm' needs a PRM (use_prm=True)")
        if stage == self._stage:
            return self
        if stage == "prm":
            self._saved_flags = {n: p.requires_grad for n, p in self.arm_parameters()}
            for _, p in self.arm_parameters():
                p.requires_grad_(False)
        else:
            flags = self._saved_flags or {}
            for n, p in self.arm_parameters():
                p.requires_grad_(flags.get(n, True))
            self._saved_flags = None
        self._stage = stage
        return self

    # --- forward ----------------------------------------------------------------------------
    def forward_all(self, hazy: torch.Tensor) -> dict[str, Any]:
        """``{"out", "j0", "t", "A", "stage"}``; without a PRM ``j0``/``t``/``A`` are None."""
        if hazy.dim() != 4 or hazy.shape[1] != 3:
            raise ValueError(f"expected a Bx3xHxW batch, got shape {tuple(hazy.shape)}")
        if not self.use_prm:
            return {"out": self.backbone(hazy), "j0": None, "t": None, "A": None, "stage": self._stage}
        j0, t, A = self.prm(hazy)
        if self._stage == "prm":
            out = j0
        else:
            j0_in = j0.clamp(0.0, 1.0) if self.j0_clamp else j0
            arm_in = self.adapter(torch.cat((hazy, j0_in), dim=1)) if self.adapter is not None else j0_in
            out = self.backbone(arm_in)
        return {"out": out, "j0": j0, "t": t, "A": A, "stage": self._stage}

    def forward(self, hazy: torch.Tensor) -> torch.Tensor:
        parts = self.forward_all(hazy)
        out = parts.pop("out")
        if any(out is v for v in (hazy, *parts.values())):
            # stage "prm" (out is J0) or a pass-through backbone: never hang the dict on the input
            # or on a tensor the dict itself refers to
            out = out.view_as(out)
        out.iicl = parts
        return out

    def extra_repr(self) -> str:
        return f"use_prm={self.use_prm}, arm_input={self.arm_input!r}, j0_clamp={self.j0_clamp}, stage={self._stage!r}"


def build_iicl(
    *,
    backbone: str = "aecrnet",
    backbone_kwargs: Mapping[str, Any] | None = None,
    use_prm: bool = True,
    prm_width: int = 16,
    arm_input: str = "concat",
    t_min: float = 0.1,
    j0_clamp: bool = True,
) -> IICLNet:
    """An :class:`IICLNet` around a named backbone, from keyword arguments only (checkpoint-friendly).

    ``backbone``: ``"aecrnet"`` (:class:`dehazelab.models.aecrnet.AECRNet`, H and W divisible by 4)
    or ``"aodnet"`` (:class:`dehazelab.models.aodnet.AODNet`); ``backbone_kwargs`` go to its
    constructor (e.g. ``{"ngf": 16}``).
    """
    kw = dict(backbone_kwargs or {})
    if backbone == "aecrnet":
        from .aecrnet import AECRNet

        net = AECRNet(**kw)
    elif backbone == "aodnet":
        from .aodnet import AODNet

        net = AODNet(**kw)
    else:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    return IICLNet(net, use_prm=use_prm, prm_width=prm_width, arm_input=arm_input, t_min=t_min, j0_clamp=j0_clamp)
