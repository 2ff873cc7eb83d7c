"""Checkpoint format, RNG capture, model rebuild, rotation, crash-safe history."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from dehazelab.train import checkpoint as ck, folder, history


class TinyNet(nn.Module):
    def __init__(self, width: int = 4, bias: bool = True):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(width)  # buffers + versioned state_dict metadata
        self.conv2 = nn.Conv2d(width, 3, 3, padding=1, bias=bias)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv1(x))))


def _draws():
    return (random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()),
            torch.rand(3).tolist())


def test_rng_capture_restore_roundtrip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gauss_next in python's state
    np.random.randn()  # and a cached gaussian in numpy's
    state = ck.capture_rng_state()
    first = _draws()
    _draws()
    ck.restore_rng_state(state)
    assert _draws() == first


def _trained_state():
    torch.manual_seed(0)
    net = TinyNet(width=4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    x = torch.rand(2, 3, 8, 8)
    for _ in range(2):
        opt.zero_grad()
        net(x).abs().mean().backward()
        opt.step()
        sched.step()
    return net, opt, sched


def test_checkpoint_is_weights_only_loadable_and_complete(tmp_path):
    net, opt, sched = _trained_state()
    c = ck.make_checkpoint(step=2, model=net, optimizer=opt, scheduler=sched,
                           best={"metric": "psnr", "value": np.float64(20.5), "step": 2},
                           model_spec={"model": "tiny", "kwargs": {"width": np.int64(4)}},
                           config={"lr": 1e-3, "betas": (0.9, 0.999)}, extra={"arr": np.zeros(2)})
    p = ck.save_checkpoint(tmp_path / "c.pt", c)
    raw = torch.load(p, weights_only=True)  # must not raise
    assert raw["step"] == 2 and raw["best"]["value"] == 20.5 and type(raw["best"]["value"]) is float
    assert raw["model_spec"] == {"model": "tiny", "kwargs": {"width": 4}}
    assert torch.equal(raw["extra"]["arr"], torch.zeros(2, dtype=torch.float64))
    loaded = ck.load_checkpoint(p)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    opt2 = torch.optim.Adam(TinyNet(width=4).parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    # the rng part restores the generators
    ck.restore_rng_state(loaded["rng"])
    a = torch.rand(2)
    ck.restore_rng_state(loaded["rng"])
    assert torch.equal(a, torch.rand(2))


def test_non_plain_values_are_rejected(tmp_path):
    net, _, _ = _trained_state()
    with pytest.raises(TypeError, match="extra"):
        ck.make_checkpoint(step=0, model=net, extra={"obj": object()})
    c = ck.make_checkpoint(step=0, model=net)
    c["sneaky"] = {"x": np.float32(1.0)}
    with pytest.raises(TypeError, match="sneaky"):
        ck.save_checkpoint(tmp_path / "x.pt", c)
    assert not (tmp_path / "x.pt").exists()


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ck.CheckpointError, match="nothere.pt"):
        ck.load_checkpoint(tmp_path / "nothere.pt")
    (tmp_path / "garbage.pt").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ck.CheckpointError, match="garbage.pt"):
        ck.load_checkpoint(tmp_path / "garbage.pt")
    net, _, _ = _trained_state()
    good = ck.save_checkpoint(tmp_path / "good.pt", ck.make_checkpoint(step=1, model=net))
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated.pt"):
        ck.load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ck.CheckpointError, match="not a dehazelab checkpoint"):
        ck.load_checkpoint(tmp_path / "foreign.pt")


def test_model_from_checkpoint_rebuilds_from_registry(tmp_path):
    net, _, _ = _trained_state()
    net.eval()
    p = ck.save_checkpoint(tmp_path / "m.pt", ck.make_checkpoint(
        step=5, model=nn.DataParallel(net), model_spec={"model": "tiny", "kwargs": {"width": 4}}))
    rebuilt = ck.model_from_checkpoint(p, {"tiny": TinyNet}).eval()
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(rebuilt(x), net(x))
    class Entry:  # registry values like dehazelab.models.MODELS entries
        build = TinyNet

    assert torch.equal(ck.model_from_checkpoint(p, {"tiny": Entry()}).eval()(x), net(x))
    with pytest.raises(KeyError, match="tiny"):
        ck.model_from_checkpoint(p, {"other": TinyNet})
    nospec = ck.save_checkpoint(tmp_path / "n.pt", ck.make_checkpoint(step=1, model=net))
    with pytest.raises(ck.CheckpointError, match="model_spec"):
        ck.model_from_checkpoint(nospec, {"tiny": TinyNet})
    with pytest.raises(ValueError):
        ck.validate_model_spec({"name": "tiny"})


def test_checkpoint_dir_rotation(tmp_path):
    net, _, _ = _trained_state()
    d = folder.CheckpointDir(tmp_path, keep=2)
    for s in (2, 4, 6, 8):
        d.save_snapshot(ck.make_checkpoint(step=s, model=net))
    assert [p.name for p in d.snapshots()] == ["step_00000006.pt", "step_00000008.pt"]
    assert ck.load_checkpoint(d.snapshots()[-1])["step"] == 8
    d.save_last(ck.make_checkpoint(step=8, model=net))
    d.clear()
    assert list(tmp_path.iterdir()) == []


def test_history_log_append_new_columns_partial_line_and_truncate(tmp_path):
    h = history.HistoryLog(tmp_path / "history.csv")
    h.append({"step": 1, "loss": 0.1, "psnr": None})
    h.append({"step": 2, "loss": 1 / 3, "psnr": 20.123456789012345})
    h.append({"step": 3, "loss": 0.3, "aux": 7})  # new column → rewrite with empty cells above
    assert h.columns() == ["step", "loss", "psnr", "aux"]
    df = h.read()
    assert df["step"].tolist() == [1, 2, 3]
    assert df["loss"].tolist()[1] == 1 / 3 and df["psnr"].tolist()[1] == 20.123456789012345  # exact
    assert math.isnan(df["psnr"].tolist()[0]) and math.isnan(df["aux"].tolist()[0])
    # a crash in the middle of an append leaves a partial line: reading ignores it ...
    with open(h.path, "a") as f:
        f.write("4,0.4")
    assert h.read()["step"].tolist() == [1, 2, 3]
    # ... and the next append repairs the file instead of gluing onto the partial line
    h.append({"step": 4, "loss": 0.45})
    assert h.read()["step"].tolist() == [1, 2, 3, 4]
    assert h.read()["loss"].tolist()[-1] == 0.45
    h.truncate(2)
    assert h.read()["step"].tolist() == [1, 2]
    assert h.columns() == ["step", "loss", "psnr", "aux"]
    with pytest.raises(KeyError):
        h.append({"loss": 1.0})


def test_mean_window_and_nonfinite():
    w = history.MeanWindow()
    w.add({"a": 1.0, "b": 2.0})
    w.add({"a": 3.0})
    assert w.means() == {"a": 2.0, "b": 2.0} and len(w) == 2
    w2 = history.MeanWindow()
    w2.load_state_dict(w.state_dict())
    assert w2.means() == w.means()
    assert ck.nonfinite(float("nan")) and ck.nonfinite(float("-inf")) and not ck.nonfinite(1.0)
    assert ck.nonfinite(torch.tensor([1.0, float("inf")])) and not ck.nonfinite(torch.ones(3))


def test_training_diverged_message():
    e = ck.TrainingDiverged(7, "loss", float("nan"), {"loss_l1": 0.5, "loss_cr": float("nan")})
    msg = str(e)
    assert "step 7" in msg and "loss_cr=nan" in msg and "loss_l1=0.5" in msg and e.step == 7


def test_last_pt_is_written_on_time_whatever_the_step_policy(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(folder.time, "monotonic", lambda: clock[0])
    d = folder.CheckpointDir(tmp_path, every_seconds=60)
    assert folder.CheckpointDir(tmp_path).every_seconds == folder.CHECKPOINT_SECONDS == 300.0
    made = []

    def make(step):
        made.append(step)
        return ck.make_checkpoint(step=step, model=torch.nn.Linear(1, 1))

    policy = dict(last_step=100, ckpt_every=None, snapshot_every=None, evaluated=False, improved=False)
    d.save_due(make, step=1, **policy)
    clock[0] += 59.0
    d.save_due(make, step=2, **policy)
    assert made == [] and not d.last.exists()  # nothing due yet
    clock[0] += 1.0
    d.save_due(make, step=3, **policy)
    assert made == [3] and ck.load_checkpoint(d.last)["step"] == 3
    clock[0] += 30.0
    d.save_due(make, step=4, **policy)
    assert made == [3]  # the clock restarted at the save
    d.save_due(make, step=5, **policy, force_last=True)
    assert made == [3, 5]
    with pytest.raises(ValueError, match="every_seconds"):
        folder.CheckpointDir(tmp_path, every_seconds=0)


def test_stale_temporary_files_of_the_run_are_removed_and_nothing_else(tmp_path):
    d = folder.CheckpointDir(tmp_path)
    ours = [tmp_path / n for n in (".last.pt.ab12cd34.tmp", ".history.csv.x1y2z3w4.tmp", ".step_00000010.pt.q.tmp")]
    theirs = [tmp_path / n for n in (".notes.tmp", "last.pt.tmp", ".last.pt.keep")]
    for p in ours + theirs:
        p.write_bytes(b"x")
    assert sorted(d.remove_stale_tmp()) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)
