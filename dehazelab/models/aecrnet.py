"""AECR-Net (Wu et al., CVPR 2021): the autoencoder-like dehazing network, as the official code builds it.

Layer list (official ``models/AECRNet.py``, class ``Dehaze``; methods §1.2), for an H×W input with H
and W divisible by 4 (``ngf`` = 64 in the paper):

    deconv   FastDeconv(3, 3, k3, p1)                    whitened input conv (not in the paper, §1.3)
    down1    ReflectionPad(3) → Conv7×7 3→ngf → ReLU
    down2    Conv3×3 s2 p1 ngf→2ngf → ReLU                                            H/2
    down3    Conv3×3 s2 p1 2ngf→4ngf → ReLU                                           H/4
    fa       ONE FFA "DehazeBlock" (conv-ReLU-(+x)-conv-CA-PA-(+x)) applied 6 times (shared weights)
    dfe      ONE modulated deformable conv 4ngf→4ngf applied twice (shared), no activation between
    mix1     σ(w1)·down3 + (1−σ(w1))·dfe_out,   w1 initialised to −1
    up1      ConvTranspose3×3 s2 p1 op1 4ngf→2ngf → ReLU                              H/2
    mix2     σ(w2)·down2 + (1−σ(w2))·up1,       w2 initialised to −0.6
    up2      ConvTranspose3×3 s2 p1 op1 2ngf→ngf → ReLU                               H
    up3      ReflectionPad(3) → Conv7×7 ngf→3 → Tanh

PyTorch default initialisation everywhere except the DFE (DCNv2 init, see ``dfe.py``). The output is
the Tanh output itself (range [−1, 1], trained against [0, 1] targets; evaluation clamps to [0, 1]);
there is no global residual. With ngf=64 and weight sharing the model has **2,614,229** parameters
(the paper's "2.61M"); ``shared=False`` builds 6 distinct FA blocks and 2 distinct DFEs:
2,614,229 + 5·1,205,089 + 652,315 = **9,291,989**.

Differences from the official code, all deliberate:

* The DFE is ``dehazelab.models.dfe.DFE`` (torchvision or grid_sample backend) instead of the compiled
  CUDA-only DCNv2 extension, and it is built on the model's device instead of ``.cuda()`` in
  ``__init__``. Its width is ``4·ngf`` (the official code hard-codes 256, which only works for
  ngf=64), so small-width variants (ngf=16) work.
* Module names: the FA block(s) live in ``fa`` (a ``ModuleList`` of 1 block when shared, ``n_fa``
  blocks otherwise), the DFE(s) in ``dfe`` (1 or 2). ``OFFICIAL_KEY_MAP`` /
  :func:`load_official_state_dict` translate a released checkpoint (see there).
* Ablation switches for the paper's Table 2 (base → +DFE → +mixup): ``use_dfe=False`` skips the two
  DFE applications (the FA output goes to the decoder directly); ``use_mix=False`` removes both skip
  connections — the decoder feature passes alone (``out = dec``), i.e. a plain autoencoder. We read
  the paper's "base" as an autoencoder *without* skip connections, to which adaptive mixup adds the
  encoder information; the official code has no switch, so this is our reading, not released code.
  ``use_fastdeconv=False`` replaces the whitening layer by a plain 3×3 conv (84 parameters too).
* ``global_residual=True`` (off by default) adds the input to the output, as FFA-Net does and
  AECR-Net does not: the network then learns the haze *correction*, and the hazy input's edges reach
  the output without passing the 4x down/up-sampling. Not in the paper; the small size uses it
  where the notebooks say so (a recipe change measured on the validation split).
* Input sizes not divisible by 4 raise ``ValueError`` (the official code fails later with a shape
  mismatch in the mixup); pad or crop before calling.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .dfe import DFE, resolve_backend
from .fastdeconv import FastDeconv

__all__ = [
    "AECRNet",
    "DehazeBlock",
    "CALayer",
    "PALayer",
    "Mix",
    "OFFICIAL_KEY_MAP",
    "official_to_dehazelab_keys",
    "load_official_state_dict",
]


class CALayer(nn.Module):
    """FFA-Net channel attention: global average → 1×1 C→C/8 → ReLU → 1×1 C/8→C → sigmoid → scale."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ca(self.avg_pool(x))


class PALayer(nn.Module):
    """FFA-Net pixel attention: 1×1 C→C/8 → ReLU → 1×1 C/8→1 → sigmoid → per-pixel scale."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class DehazeBlock(nn.Module):
    """FFA-Net's FA block: ``r = ReLU(conv1(x)) + x; r = PA(CA(conv2(r))); return r + x``."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.calayer = CALayer(channels)
        self.palayer = PALayer(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.act1(self.conv1(x)) + x
        r = self.palayer(self.calayer(self.conv2(r)))
        return r + x


class Mix(nn.Module):
    """Adaptive mixup: ``σ(w)·skip + (1−σ(w))·dec`` with one learnable scalar ``w`` (init ``m``)."""

    def __init__(self, m: float = -0.8):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([float(m)]))

    def forward(self, skip: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.w)
        return skip * a + dec * (1 - a)


class AECRNet(nn.Module):
    """AECR-Net ``Dehaze`` network; defaults reproduce the paper's 2.61 M-parameter model.

    Args (keywords): ``in_ch``/``out_ch`` 3, ``ngf`` 64, ``shared`` (one FA block applied ``n_fa``
    times and one DFE applied twice — the official code; False = distinct modules), ``n_fa`` 6,
    ``dfe_backend`` ("auto" | "torchvision" | "grid_sample", see ``dfe.py``), ``use_dfe``,
    ``use_mix``, ``use_fastdeconv`` (ablation switches, see the module docstring), ``global_residual``
    (output ``x + net(x)``, the Tanh output read as a correction of the hazy input, as FFA-Net's
    global residual; not in AECR-Net — a CPU-scale recipe choice, see the module docstring).
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        ngf: int = 64,
        shared: bool = True,
        n_fa: int = 6,
        dfe_backend: str = "auto",
        *,
        n_dfe: int = 2,
        use_dfe: bool = True,
        use_mix: bool = True,
        use_fastdeconv: bool = True,
        global_residual: bool = False,
    ):
        super().__init__()
        if ngf < 2 or ngf % 2:
            raise ValueError(f"ngf must be even (channel/pixel attention reduce 4·ngf channels by 8), got {ngf}")
        self.in_ch, self.out_ch, self.ngf = in_ch, out_ch, ngf
        self.shared, self.n_fa, self.n_dfe = shared, n_fa, n_dfe
        self.use_dfe, self.use_mix, self.use_fastdeconv = use_dfe, use_mix, use_fastdeconv
        self.global_residual = global_residual

        if use_fastdeconv:
            self.deconv = FastDeconv(in_ch, in_ch, kernel_size=3, stride=1, padding=1)
        else:
            self.deconv = nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1)
        self.down1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), nn.ReLU(True))
        self.down2 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), nn.ReLU(True))
        self.down3 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1), nn.ReLU(True))

        self.fa = nn.ModuleList(DehazeBlock(ngf * 4) for _ in range(1 if shared else n_fa))
        if use_dfe:
            self.dfe = nn.ModuleList(
                DFE(ngf * 4, ngf * 4, 3, stride=1, padding=1, backend=dfe_backend)
                for _ in range(1 if shared else n_dfe)
            )
        if use_mix:
            self.mix1 = Mix(m=-1.0)
            self.mix2 = Mix(m=-0.6)

        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(True)
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 2, ngf, 3, stride=2, padding=1, output_padding=1), nn.ReLU(True)
        )
        self.up3 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh())

    @property
    def dfe_backend(self) -> str | None:
        return self.dfe[0].backend if self.use_dfe else None

    def set_dfe_backend(self, backend: str) -> None:
        """Switch every DFE to another backend (the parameters are the same)."""
        if self.use_dfe:
            resolve_backend(backend, torch.device("cpu"))  # validates the name
            for m in self.dfe:
                m.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected a Bx{self.in_ch}xHxW batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(
                f"AECR-Net needs H and W divisible by 4 (two stride-2 stages), got {h}x{w}; pad or crop first"
            )
        d1 = self.down1(self.deconv(x))
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        y = d3
        for i in range(self.n_fa):
            y = self.fa[0 if self.shared else i](y)
        if self.use_dfe:
            for i in range(self.n_dfe):
                y = self.dfe[0 if self.shared else i](y)
        if self.use_mix:
            y = self.mix1(d3, y)
        u1 = self.up1(y)
        if self.use_mix:
            u1 = self.mix2(d2, u1)
        u2 = self.up2(u1)
        out = self.up3(u2)
        return x + out if self.global_residual else out


# --- loading the released checkpoint ------------------------------------------------------------

#: Prefix renames from the released AECR-Net checkpoint (official ``Dehaze`` + CharlesShang ``DCN``,
#: issue GlassyWu/AECR-Net#23) to this module, applied in order, first match wins. Keys not listed
#: (``deconv.*``, ``down1/2/3.*``, ``up1/2/3.*``) have the same names in both. A DataParallel
#: ``module.`` prefix is stripped first.
OFFICIAL_KEY_MAP: dict[str, str] = {
    "block.": "fa.0.",  # the one shared FA block
    "dcn_block.dcn.conv_offset_mask.": "dfe.0.offset_mask.",  # 27-channel offset/mask conv
    "dcn_block.dcn.weight": "dfe.0.weight",  # main deformable conv weight [256, 256, 3, 3]
    "dcn_block.dcn.bias": "dfe.0.bias",
    "mix4.w": "mix1.w",  # the release calls the mixups mix4/mix5, the code mix1/mix2
    "mix5.w": "mix2.w",
}


def official_to_dehazelab_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a released-checkpoint state dict (``OFFICIAL_KEY_MAP``); unknown keys pass unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        k = key[len("module."):] if key.startswith("module.") else key
        for old, new in OFFICIAL_KEY_MAP.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = value
    return out


def load_official_state_dict(model: AECRNet, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
    """Load the official release's weights (key names as in GlassyWu/AECR-Net) into ``model``.

    ``state_dict`` may be the checkpoint dict itself or hold it under ``"model"``/``"state_dict"``
    (the training script saves ``{"model": net.state_dict(), ...}``). ``model`` must be the paper
    configuration (``shared=True``, ``use_dfe``, ``use_mix``, ``use_fastdeconv``; ngf=64 for the
    real release). Returns ``load_state_dict``'s result.
    """
    for wrapper in ("model", "state_dict"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
            break
    if not (model.shared and model.use_dfe and model.use_mix and model.use_fastdeconv):
        raise ValueError("the official checkpoint matches only AECRNet(shared=True) with DFE, mixup and FastDeconv")
    return model.load_state_dict(official_to_dehazelab_keys(state_dict), strict=strict)
