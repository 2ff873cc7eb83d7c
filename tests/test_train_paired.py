"""The paired training loop: exact resume, divergence stop, schedule, history, evaluation, config.

Everything runs on a tiny conv net and an in-memory dataset whose random crops/flips draw from all
three global RNGs (torch, numpy, python), with dropout in the net, so resuming is exact only if the
checkpoint really restores every RNG and the data position.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dehazelab.io import read_json
from dehazelab.train import checkpoint as ck, history
from dehazelab.train import loop, paired
from dehazelab.train.config import BOOKKEEPING_FIELDS, PairedTrainConfig
from dehazelab.train.paired import CosineDecay, evaluate, train_paired


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class TinyPairs(torch.utils.data.Dataset):
    """n random clear images, hazy = 0.6·clear + 0.35; random crop (torch RNG for y, numpy for x)
    and random h-flip (python RNG) when ``crop`` is set, full images otherwise."""

    def __init__(self, n=10, size=16, crop=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.clear = torch.rand(n, 3, size, size, generator=g)
        self.hazy = (0.6 * self.clear + 0.35).clamp(0, 1)
        self.size, self.crop = size, crop

    def __len__(self):
        return len(self.clear)

    def __getitem__(self, i):
        h, c = self.hazy[i], self.clear[i]
        if self.crop:
            k = self.crop
            y = int(torch.randint(0, self.size - k + 1, ()))
            x = int(np.random.randint(0, self.size - k + 1))
            h, c = h[:, y:y + k, x:x + k], c[:, y:y + k, x:x + k]
            if random.random() < 0.5:
                h, c = h.flip(-1), c.flip(-1)
        return {"hazy": h, "clear": c, "name": f"img{i:02d}"}


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Conv2d(8, 3, 3, padding=1))


def simple_metrics(pred, gt):
    mse = ((pred - gt) ** 2).flatten(1).mean(1)
    return {"psnr": -10 * torch.log10(mse), "ssim": 1 - (pred - gt).abs().flatten(1).mean(1)}


def make_cfg(**kw):
    base = dict(steps=6, batch_size=4, crop=12, lr=1e-2, eval_every=3, log_every=1, ckpt_every=3, seed=7, threads=1)
    base.update(kw)
    return PairedTrainConfig(**base)


def run(out_dir, cfg=None, net=None, loss_fn=None, **kw):
    net = net if net is not None else tiny_net()
    hist = train_paired(net, loss_fn, TinyPairs(), TinyPairs(n=3, crop=None, seed=9), cfg or make_cfg(), out_dir,
                        model_spec={"model": "tiny", "kwargs": {}}, metric_fn=simple_metrics, **kw)
    return net, hist


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_history(h1: pd.DataFrame, h2: pd.DataFrame):
    cols = [c for c in h1.columns if c != "time_per_step"]  # wall-clock time cannot match
    assert list(h1.columns) == list(h2.columns)
    pd.testing.assert_frame_equal(h1[cols].reset_index(drop=True), h2[cols].reset_index(drop=True),
                                  check_exact=True)


def all_checkpoints_weights_only(folder):
    files = sorted(folder.glob("*.pt"))
    assert files
    for f in files:
        torch.load(f, weights_only=True)  # raises if anything but tensors/plain python is inside
    return [f.name for f in files]


class CrashAt:
    """L1 loss that raises (a simulated crash) or returns NaN on its ``at``-th call."""

    def __init__(self, at, mode="crash"):
        self.at, self.mode, self.calls, self.losses = at, mode, 0, []

    def __call__(self, out, clear, hazy, batch):
        self.calls += 1
        if self.calls == self.at and self.mode == "crash":
            raise KeyboardInterrupt("simulated crash")
        loss = (out - clear).abs().mean()
        if self.calls == self.at and self.mode == "nan":
            loss = loss * float("nan")
        self.losses.append(float(loss.detach()))
        return loss, {"l1": float(loss.detach())}


@pytest.mark.parametrize("interrupt", ["stop_at", "crash"])
def test_resume_reaches_identical_weights_and_history(tmp_path, interrupt):
    ref_net, ref_hist = run(tmp_path / "ref")
    ref_ckpt = ck.load_checkpoint(tmp_path / "ref" / "last.pt")
    assert ref_ckpt["step"] == 6 and len(ref_hist) == 6

    out = tmp_path / "run"
    if interrupt == "stop_at":
        _, h = run(out, stop_at=3)
        assert h["step"].tolist() == [1, 2, 3]
    else:  # crash during step 5: last.pt is from step 3, history already has a row for step 4
        with pytest.raises(KeyboardInterrupt):
            run(out, loss_fn=CrashAt(5))
        assert history.HistoryLog(out / "history.csv").read()["step"].tolist() == [1, 2, 3, 4]
    assert ck.load_checkpoint(out / "last.pt")["step"] == 3

    # a "new process": the model is rebuilt with a different init; weights must come from last.pt
    np.random.seed(123)
    random.seed(123)
    net2, hist2 = run(out, net=tiny_net(seed=99))
    assert_same_state(net2.state_dict(), ref_net.state_dict())
    ckpt2 = ck.load_checkpoint(out / "last.pt")
    assert_same_state(ckpt2["model"], ref_ckpt["model"])
    assert torch.equal(ckpt2["optimizer"]["state"][0]["exp_avg_sq"], ref_ckpt["optimizer"]["state"][0]["exp_avg_sq"])
    assert ckpt2["best"] == ref_ckpt["best"]
    assert_same_history(hist2, ref_hist)
    assert_same_history(history.HistoryLog(out / "history.csv").read(), ref_hist)
    assert all_checkpoints_weights_only(out) == ["best.pt", "last.pt"]


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch):
    """Guards the test above: the dataset/dropout randomness really matters for the result."""
    ref_net, _ = run(tmp_path / "ref")
    run(tmp_path / "run", stop_at=3)
    monkeypatch.setattr(loop, "restore_rng_state", lambda state: None)
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    net2, _ = run(tmp_path / "run")
    assert any(not torch.equal(a, b) for a, b in zip(net2.state_dict().values(), ref_net.state_dict().values()))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_cfg(ckpt_every=2, eval_every=0)
    ref2, _ = run(tmp_path / "ref2", cfg=cfg, stop_at=2)
    ref3, _ = run(tmp_path / "ref3", cfg=cfg, stop_at=3)

    out = tmp_path / "nan"
    with pytest.raises(ck.TrainingDiverged) as info:
        run(out, cfg=cfg, loss_fn=CrashAt(4, mode="nan"))
    err = info.value
    assert err.step == 4 and err.what == "loss" and math.isnan(err.value)
    assert "step 4" in str(err) and "loss_l1=nan" in str(err)
    assert err.last_good == out / "last.pt" and err.saved == out / "prediverge.pt"

    last = ck.load_checkpoint(out / "last.pt")  # untouched: still the state after step 2
    assert last["step"] == 2
    assert_same_state(last["model"], ref2.state_dict())
    pre = ck.load_checkpoint(out / "prediverge.pt")  # the state just before the failing step
    assert pre["step"] == 3
    assert_same_state(pre["model"], ref3.state_dict())
    assert all(torch.isfinite(v).all() for v in pre["model"].values())
    assert history.HistoryLog(out / "history.csv").read()["step"].tolist() == [1, 2, 3]
    assert all_checkpoints_weights_only(out) == ["last.pt", "prediverge.pt"]


def test_nonfinite_gradient_stops_too(tmp_path):
    def sqrt_at_zero(out, clear, hazy, batch):
        # finite value (sqrt(0) = 0) but an infinite/NaN gradient
        loss = (out - clear).abs().mean() + torch.sqrt(((out - out.detach()) ** 2).sum())
        return loss, {"l1": float(loss.detach())}

    with pytest.raises(ck.TrainingDiverged, match="gradient norm") as info:
        run(tmp_path / "g", loss_fn=sqrt_at_zero)
    assert info.value.step == 1 and info.value.last_good is None
    pre = ck.load_checkpoint(tmp_path / "g" / "prediverge.pt")
    assert pre["step"] == 0
    assert_same_state(pre["model"], tiny_net().state_dict())  # the untouched initial weights


def test_three_argument_loss_and_set_epoch(tmp_path):
    class ThreeArgLoss(nn.Module):  # the shape of dehazelab.losses.cr.CRLoss
        def forward(self, out, clear, hazy):
            l1 = (out - clear).abs().mean()
            return l1, {"l1": float(l1.detach()), "loss": float(l1.detach())}

    class EpochAware(TinyPairs):
        epochs_seen: list = []

        def set_epoch(self, epoch):
            self.epochs_seen.append(epoch)

    cfg = make_cfg(eval_every=0, ckpt_every=None)
    net = tiny_net()
    hist = train_paired(net, ThreeArgLoss(), EpochAware(), None, cfg, tmp_path / "a", stop_at=3, progress=False)
    assert list(hist.columns) == ["step", "epoch", "lr", "loss", "loss_l1", "grad_norm", "time_per_step",
                                  "psnr", "ssim", "eval_n"]
    assert (hist["loss"] == hist["loss_l1"]).all()
    assert EpochAware.epochs_seen == [0, 1]  # steps 1-2 are epoch 0, step 3 starts epoch 1
    train_paired(tiny_net(), ThreeArgLoss(), EpochAware(), None, cfg, tmp_path / "a", progress=False)
    assert EpochAware.epochs_seen == [0, 1, 1, 2]  # the resumed run re-enters epoch 1 mid-way
    with pytest.raises(TypeError, match="must accept"):
        train_paired(tiny_net(), lambda out, clear: 0, TinyPairs(), None, cfg, tmp_path / "b", progress=False)


def test_grad_clip_limits_the_applied_gradient(tmp_path, monkeypatch):
    applied = []
    original = torch.nn.utils.clip_grads_with_norm_

    def spy(params, max_norm, total_norm, *a, **k):
        params = list(params)
        out = original(params, max_norm, total_norm, *a, **k)
        applied.append(float(torch.nn.utils.get_total_norm([p.grad for p in params])))
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", spy)
    _, hist = run(tmp_path / "c", cfg=make_cfg(grad_clip=0.05, eval_every=0))
    assert len(applied) == 6
    assert (hist["grad_norm"] > 0.05).all()  # logged norm is the one before clipping
    np.testing.assert_allclose(applied, 0.05, rtol=1e-4)


def test_cosine_lr_matches_closed_form(tmp_path):
    cfg = make_cfg(steps=8, lr=3e-3, eval_every=0, ckpt_every=None)
    _, hist = run(tmp_path / "cos", cfg=cfg)
    expected = [0.5 * (1 + math.cos(math.pi * t / 8)) * 3e-3 for t in range(8)]
    np.testing.assert_allclose(hist["lr"].to_numpy(), expected, rtol=1e-12, atol=0)
    assert hist["lr"].iloc[0] == 3e-3 and hist["lr"].iloc[4] == pytest.approx(1.5e-3, rel=1e-12)
    f = CosineDecay(8)
    assert (f(0), f(4), f(8)) == (1.0, pytest.approx(0.5), pytest.approx(0.0, abs=1e-15))

    _, flat = run(tmp_path / "flat", cfg=make_cfg(cosine=False, eval_every=0))
    assert (flat["lr"] == 1e-2).all()


def test_history_columns_and_window_means(tmp_path):
    calls = []

    def two_part_loss(out, clear, hazy, batch):
        l1 = (out - clear).abs().mean()
        aux = (out - clear).pow(2).mean()
        calls.append((float(l1.detach()), float(aux.detach())))
        return l1 + 0.5 * aux, {"l1": calls[-1][0], "aux": calls[-1][1]}

    cfg = make_cfg(log_every=2, eval_every=3)
    _, hist = run(tmp_path / "h", cfg=cfg, loss_fn=two_part_loss)
    assert list(hist.columns) == ["step", "epoch", "lr", "loss", "loss_l1", "loss_aux", "grad_norm",
                                  "time_per_step", "psnr", "ssim", "eval_n"]
    assert hist["step"].tolist() == [2, 3, 4, 6]  # every 2nd step plus the evaluations (3, 6)
    np.testing.assert_allclose(hist["epoch"], [1.0, 1.5, 2.0, 3.0])  # 10 images // 4 = 2 steps/epoch
    # rows average the steps since the previous row
    windows = {2: [0, 1], 3: [2], 4: [3], 6: [4, 5]}
    for _, row in hist.iterrows():
        idx = windows[int(row["step"])]
        assert row["loss_l1"] == pytest.approx(np.mean([calls[i][0] for i in idx]), rel=1e-12)
        assert row["loss"] == pytest.approx(np.mean([calls[i][0] + 0.5 * calls[i][1] for i in idx]), rel=1e-6)
    evaluated = hist["psnr"].notna().tolist()
    assert evaluated == [False, True, False, True] and hist.loc[hist["psnr"].notna(), "eval_n"].tolist() == [3, 3]
    assert (hist["grad_norm"] > 0).all() and (hist["time_per_step"] > 0).all()
    saved = read_json(tmp_path / "h" / "config.json")
    assert PairedTrainConfig.from_dict(saved["config"]) == cfg
    assert saved["resolved"]["threads"] == 1 and saved["resolved"]["steps_per_epoch"] == 2


def test_best_checkpoint_snapshots_and_finished_run(tmp_path):
    cfg = make_cfg(eval_every=2, snapshot_every=2, keep_snapshots=2)
    net, hist = run(tmp_path / "s", cfg=cfg)
    out = tmp_path / "s"
    names = all_checkpoints_weights_only(out)
    assert names == ["best.pt", "last.pt", "step_00000004.pt", "step_00000006.pt"]
    best = ck.load_checkpoint(out / "best.pt")
    evals = hist.dropna(subset=["psnr"])
    i = evals["psnr"].idxmax()
    assert best["best"] == {"metric": "psnr", "value": evals.loc[i, "psnr"], "step": int(evals.loc[i, "step"])}
    assert best["step"] == best["best"]["step"]
    # the best checkpoint really scores that PSNR
    rebuilt = ck.model_from_checkpoint(best, {"tiny": lambda: tiny_net()})
    ev = evaluate(rebuilt, TinyPairs(n=3, crop=None, seed=9), "cpu", simple_metrics)
    assert ev["psnr"] == pytest.approx(best["best"]["value"], rel=1e-6)

    # calling again on a finished run trains nothing and returns the same history
    mtime = (out / "last.pt").stat().st_mtime_ns
    net2, hist2 = run(out, cfg=cfg, net=tiny_net(seed=5))
    assert (out / "last.pt").stat().st_mtime_ns == mtime
    assert_same_history(hist2, hist)
    assert_same_state(net2.state_dict(), net.state_dict())


def test_resume_rejects_a_changed_config_but_not_bookkeeping(tmp_path):
    run(tmp_path / "r", stop_at=2, cfg=make_cfg(ckpt_every=2))
    with pytest.raises(ValueError, match="lr"):
        run(tmp_path / "r", cfg=make_cfg(ckpt_every=2, lr=5e-3))
    _, h = run(tmp_path / "r", cfg=make_cfg(ckpt_every=1, log_every=2))  # bookkeeping may change
    assert h["step"].tolist() == [1, 2, 3, 4, 6]
    # resume=False starts over and removes the old run's files
    _, h = run(tmp_path / "r", cfg=make_cfg(ckpt_every=2, eval_every=0, steps=2), resume=False)
    assert h["step"].tolist() == [1, 2] and ck.load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 2
    assert ck.load_checkpoint(tmp_path / "r" / "best.pt")["best"]["step"] == 2  # not the old run's best


def test_evaluate_clamps_uses_eval_mode_and_averages_per_image():
    seen = []

    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            seen.append((self.training, x.shape[0], torch.is_grad_enabled()))
            return 3 * x - 1 + self.dummy  # leaves [0, 1]

    ds = TinyPairs(n=4, size=10, crop=None, seed=3)
    m = Affine().train()
    res = evaluate(m, ds, "cpu", simple_metrics)
    assert m.training and seen == [(False, 1, False)] * 4
    expected = []
    for i in range(4):
        pred = np.clip(3 * ds.hazy[i].numpy().astype(np.float64) - 1, 0, 1)
        mse = np.mean((pred - ds.clear[i].numpy()) ** 2)
        expected.append(10 * np.log10(1 / mse))
    assert res["n"] == 4
    assert res["psnr"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_evaluate_default_metrics_if_available():
    metrics = pytest.importorskip("dehazelab.metrics")
    ds = TinyPairs(n=2, size=16, crop=None)
    res = evaluate(nn.Identity(), ds, "cpu")
    assert res["psnr"] == pytest.approx(float(metrics.batch_psnr(ds.hazy, ds.clear).mean()), rel=1e-5)


def test_measure_step_time_leaves_model_untouched():
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = {"hazy": torch.rand(2, 3, 8, 8), "clear": torch.rand(2, 3, 8, 8)}
    t = paired.measure_step_time(net, batch, device="cpu", steps=2, warmup=1)
    assert t > 0
    assert_same_state(net.state_dict(), before)


def test_epoch_sampler_resumes_mid_epoch():
    full = list(paired.EpochSampler(10, seed=3, epoch=2))
    assert sorted(full) == list(range(10))
    assert list(paired.EpochSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    assert full != list(paired.EpochSampler(10, seed=3, epoch=3))


def test_batch_larger_than_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        run(tmp_path / "x", cfg=make_cfg(batch_size=11))


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------
def test_config_roundtrip_hash_and_unknown_keys():
    cfg = PairedTrainConfig(steps=100, batch_size=16, crop=240)
    assert cfg.lr == 2e-4 and cfg.betas == (0.9, 0.999) and cfg.cosine and cfg.device == "auto"
    d = cfg.to_dict()
    assert d["betas"] == [0.9, 0.999]
    assert PairedTrainConfig.from_dict(d) == cfg
    assert PairedTrainConfig.from_dict(d).config_hash() == cfg.config_hash()
    assert cfg.replace(lr=1e-4).config_hash() != cfg.config_hash()
    assert cfg.replace(log_every=3).config_hash(exclude=BOOKKEEPING_FIELDS) == cfg.config_hash(exclude=BOOKKEEPING_FIELDS)
    with pytest.raises(ValueError, match=r"unknown PairedTrainConfig key\(s\) \['lrr'\]"):
        PairedTrainConfig.from_dict({**d, "lrr": 1e-3})
    with pytest.raises(ValueError, match="missing"):
        PairedTrainConfig.from_dict({"steps": 1})
    with pytest.raises(ValueError):
        PairedTrainConfig(steps=0, batch_size=1, crop=8)
    with pytest.raises(ValueError):
        PairedTrainConfig(steps=1, batch_size=1, crop=8, betas=(0.9,))
    with pytest.raises(TypeError):
        PairedTrainConfig(steps=1.5, batch_size=1, crop=8)
