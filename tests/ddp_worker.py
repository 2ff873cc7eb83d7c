"""Worker for ``tests/test_distributed.py`` (not collected by pytest: no ``test_`` prefix).

Run either as one plain process (``WORLD_SIZE`` unset) or under ``torchrun --nproc-per-node 2``;
both runs get the same arguments and the same *global* batches::

    python tests/ddp_worker.py OUT_ROOT [float32|float64]
    python -m torch.distributed.run --nproc-per-node 2 --master-port P tests/ddp_worker.py OUT_ROOT [float32|float64]

Scenarios, in order (every rank runs all of them; the training functions are collectives):

1. ``paired``   — :func:`train_paired` on a tiny conv net (no dropout, no batch statistics) and a
   deterministic synthetic dataset whose items are already at crop size (no augmentation), global
   batch 4, 6 steps over 2 epochs, cosine lr, evaluation every 3 steps. Rank ``r`` gets its *own*
   ``out_dir`` (``paired_rank<r>``) so that the test can see that ranks > 0 write nothing.
2. ``paired_resume`` — the same run in one shared folder, interrupted after step 3 (``stop_at``)
   and resumed to the end (every rank loads ``last.pt``).
3. ``cut``      — :func:`train_unpaired` with a tiny CUT, global batch 2, 6 steps (4 + 2 decay);
   ``cut_2steps`` the same run stopped after step 2.
4. ``helpers``  — the collectives of :mod:`dehazelab.distributed` on rank-dependent tensors.
5. ``bad_batch`` — global batch 3: a ``ValueError`` when the world size is 2.

A second argument ``float64`` runs every scenario in float64 (the same initial weights and data,
converted): the reference without float32 rounding.

Each rank writes what it ends with (its own final weights, caught errors, helper results) to
``OUT_ROOT/worker_rank<r>.pt`` — the worker's file, not the trainers'.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from dehazelab.data.datasets import PairedDataset, UnpairedDataset
from dehazelab.methods import build_method
from dehazelab import distributed as ddp
from dehazelab.train.config import PairedTrainConfig
from dehazelab.train.paired import train_paired
from dehazelab.train.unpaired import UnpairedTrainConfig, train_unpaired

CROP = 16
#: CUT at crop 16: the tapped layers (0, 4, 8, 12, 13) have 22², 16², 8², 4², 4² positions, so
#: num_patches = 22² = 484 takes *every* position of every layer (no random draw, raster order).
#: ``init_gain=0.3`` and ``netF_nc=32`` instead of CUT's 0.02 / 256: with heads this small and the
#: 0.02 init many sampled rows of a head's output are exactly its (zero) bias (all hidden ReLUs
#: off), and the L2 normalisation of a ~0 vector gives gradients ~1e6 whose float rounding Adam
#: then amplifies — the 1- and 2-process runs drift apart by rounding alone. This setting is
#: well-conditioned (first-step gradient norm ~2e2).
CUT_KW = dict(ngf=4, n_blocks=2, ndf=4, n_layers_D=2, nce_layers=(0, 4, 8, 12, 13), num_patches=22 * 22,
              netF_nc=32, init_gain=0.3, lr=1e-3)


class FixedPairs(torch.utils.data.Dataset):
    """``n`` deterministic (hazy, clear) pairs at crop size; no randomness in ``__getitem__``."""

    crop = CROP
    augment = False

    def __init__(self, n: int = 12, seed: int = 0, size: int = CROP):
        g = torch.Generator().manual_seed(seed)
        self.clear = torch.rand(n, 3, size, size, generator=g)
        self.hazy = (0.6 * self.clear + 0.35 + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)

    def __len__(self) -> int:
        return len(self.clear)

    def __getitem__(self, i):
        return {"hazy": self.hazy[i], "clear": self.clear[i], "name": f"p{i:02d}"}


def tiny_net() -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def simple_metrics(pred, gt):
    mse = ((pred - gt) ** 2).flatten(1).mean(1)
    return {"psnr": -10 * torch.log10(mse), "ssim": 1 - (pred - gt).abs().flatten(1).mean(1)}


def paired_cfg(**kw) -> PairedTrainConfig:
    base = dict(steps=6, batch_size=4, crop=CROP, lr=2e-2, augment=False, eval_every=3, log_every=1, seed=5,
                threads=1, device="cpu")
    base.update(kw)
    return PairedTrainConfig(**base)


def images(n: int, seed: int, h: int = CROP, w: int = CROP):
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, max(1, h // 4), max(1, w // 4), generator=g)
    big = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return [im.permute(1, 2, 0).numpy().astype("float32") for im in big]


class AsDtype(torch.utils.data.Dataset):
    """``ds``'s items with their tensors cast to ``dtype`` (for the float64 reference run)."""

    def __init__(self, ds, dtype):
        self.ds, self.dtype = ds, dtype

    def __len__(self) -> int:
        return len(self.ds)

    def __getattr__(self, name):  # crop, augment, ... of the wrapped dataset
        if name in ("ds", "dtype"):
            raise AttributeError(name)
        return getattr(self.ds, name)

    def __getitem__(self, i):
        return {k: v.to(self.dtype) if isinstance(v, torch.Tensor) else v for k, v in self.ds[i].items()}


def main(root: str, dtype: str = "float32") -> None:
    if dtype not in ("float32", "float64"):
        raise SystemExit(f"dtype must be float32 or float64, got {dtype!r}")
    # float64: every network and dataset is built exactly as in float32 (same random draws), then
    # converted (the methods and evaluate() cast inputs to the networks' dtype) -- the same runs
    # from the same start without float32 rounding, which the test uses to tell rounding apart from
    # a real 1- vs 2-process difference.
    dt = getattr(torch, dtype)
    ctx = ddp.DistContext.from_env()
    rank = ctx.rank
    report: dict = {"world_size": ctx.world_size, "rank": rank}
    test_set = AsDtype(FixedPairs(n=2, seed=9), dt)

    # 1. paired, one out_dir per rank
    net = tiny_net().to(dt)
    report["paired_initial"] = {k: v.clone() for k, v in net.state_dict().items()}
    hist = train_paired(net, None, AsDtype(FixedPairs(), dt), test_set, paired_cfg(), os.path.join(root, f"paired_rank{rank}"),
                        model_spec={"model": "tiny", "kwargs": {}}, metric_fn=simple_metrics, progress=False)
    report["paired_final"] = {k: v.clone() for k, v in net.state_dict().items()}
    report["paired_hist_len"] = len(hist)

    # 2. paired, shared folder, interrupted and resumed
    shared = os.path.join(root, "paired_resume")
    net = tiny_net().to(dt)
    train_paired(net, None, AsDtype(FixedPairs(), dt), test_set, paired_cfg(), shared, model_spec={"model": "tiny", "kwargs": {}},
                 metric_fn=simple_metrics, progress=False, stop_at=3, resume=False)
    net = tiny_net().to(dt)
    hist = train_paired(net, None, AsDtype(FixedPairs(), dt), test_set, paired_cfg(), shared,
                        model_spec={"model": "tiny", "kwargs": {}}, metric_fn=simple_metrics, progress=False,
                        resume=True)
    report["paired_resume_hist_len"] = len(hist)
    report["paired_resume_final"] = {k: v.clone() for k, v in net.state_dict().items()}

    # 3. unpaired CUT (shared folder)
    method = build_method("cut", **CUT_KW)
    for n in method.nets.values():
        n.to(dt)  # in place: the optimisers keep their parameters
    report["cut_initial"] = {k: v.clone() for k, v in method.nets["G"].state_dict().items()}
    train_set = UnpairedDataset(images(4, 1), images(3, 2), crop=CROP, augment=False, seed=3)
    pt = AsDtype(PairedDataset([(h, c, f"t{i}") for i, (h, c) in enumerate(zip(images(2, 5), images(2, 6)))]),
                 dt)
    ucfg = UnpairedTrainConfig(n_steps=4, n_steps_decay=2, crop=CROP, batch_size=2, augment=False,
                               decay_data="keep", eval_every=3, log_every=1, seed=11, threads=1, device="cpu")
    train_unpaired(method, train_set, pt, ucfg, os.path.join(root, "cut"), resume=False, progress=False)
    report["cut_final"] = {name: {k: v.clone() for k, v in n.state_dict().items()} for name, n in method.nets.items()}
    # the same run stopped after 2 steps (float32 is compared here: see tests/test_distributed.py)
    method = build_method("cut", **CUT_KW)
    for n in method.nets.values():
        n.to(dt)
    train_unpaired(method, train_set, pt, ucfg, os.path.join(root, "cut_2steps"), resume=False, progress=False,
                   stop_at=2)
    report["cut_2steps"] = {name: {k: v.clone() for k, v in n.state_dict().items()} for name, n in method.nets.items()}

    # 4. the collectives
    if ctx.enabled:
        w = ctx.world_size
        h: dict = {}
        t = torch.full((3,), float(rank + 1))
        h["mean"] = ddp.all_reduce_mean_(t).tolist()
        a = nn.Parameter(torch.zeros(2))
        b = nn.Parameter(torch.zeros(2))
        c = nn.Parameter(torch.zeros(2))
        a.grad = torch.full((2,), float(rank + 1))           # on every rank
        if rank == 1:
            b.grad = torch.full((2,), 4.0)                   # on rank 1 only
        ddp.average_gradients_([a, b, c, a])                 # c: no rank has a gradient
        h["grad_a"], h["grad_b"], h["grad_c_none"] = a.grad.tolist(), b.grad.tolist(), c.grad is None
        m = nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.fill_(float(rank))
        ddp.broadcast_module_(m)
        h["bcast"] = m.weight.flatten().tolist()
        opt = torch.optim.Adam(m.parameters(), lr=0.1)
        m(torch.ones(1, 2)).sum().mul(rank + 1).backward()
        opt.step()
        ddp.broadcast_optimizer_state_(opt)
        h["adam_exp_avg"] = opt.state[m.weight]["exp_avg"].flatten().tolist()
        h["any"], h["all"] = ddp.any_rank(rank == 1), ddp.all_ranks(rank == 1)
        h["means"] = ddp.mean_over_ranks({"x": float(rank), "y": 2.0 * rank})
        try:
            ddp.mean_over_ranks({f"k{rank}": 1.0})
            h["mismatch"] = None
        except RuntimeError as e:
            h["mismatch"] = str(e)
        h["world"] = w
        report["helpers"] = h

    # 5. a global batch that the world size does not divide
    try:
        train_paired(tiny_net(), None, FixedPairs(), None, paired_cfg(batch_size=3), os.path.join(root, "bad"),
                     progress=False)
        report["bad_batch"] = None
    except ValueError as e:
        report["bad_batch"] = str(e)

    torch.save(report, os.path.join(root, f"worker_rank{rank}.pt"))
    if ctx.enabled:
        ddp.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main(*sys.argv[1:])
