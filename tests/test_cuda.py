"""CUDA paths: device selection, mixed precision (AMP), channels-last memory format, inference.

Two parts:

* **CPU-side behaviour** (always runs): ``amp=True`` without CUDA warns once, trains in float32 and
  says so in ``config.json``; ``channels_last=True`` runs on the CPU too and matches the default
  memory format within float rounding (paired and unpaired loops; one step of every unpaired
  method at batch 1 and 2 in float64, where the InstanceNorm guard matters); the new config fields do not
  change the hash of configs that leave them at their defaults, and old checkpoints (configs
  without the fields) still resume.
* **GPU tests** (class ``TestOnCuda``, skipped cleanly without a CUDA device).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dehazelab.io import read_json
from dehazelab.repro import pick_device
from dehazelab.train.checkpoint import load_checkpoint, save_checkpoint
from dehazelab.train.config import LATE_FIELD_DEFAULTS, PairedTrainConfig
from dehazelab.train.paired import train_paired
from dehazelab.train.unpaired import UnpairedTrainConfig, train_unpaired

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402  (tiny deterministic data and models shared with test_distributed)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cfg(**kw) -> PairedTrainConfig:
    base = dict(steps=4, batch_size=4, crop=ddp_worker.CROP, lr=1e-2, augment=False, eval_every=0, log_every=1,
                seed=3, threads=1, device="cpu")
    base.update(kw)
    return PairedTrainConfig(**base)


def run_paired(out, c, net=None, **kw):
    net = net if net is not None else ddp_worker.tiny_net()
    hist = train_paired(net, None, ddp_worker.FixedPairs(), None, c, out, progress=False, **kw)
    return net, hist


def state(net):
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------ CPU side
def test_amp_without_cuda_warns_once_and_trains_float32(tmp_path):
    ref, _ = run_paired(tmp_path / "fp32", cfg())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        net, hist = run_paired(tmp_path / "amp", cfg(amp=True))
    amp_warnings = [w for w in rec if "amp=True ignored" in str(w.message)]
    assert len(amp_warnings) == 1 and "float32" in str(amp_warnings[0].message)
    resolved = read_json(tmp_path / "amp" / "config.json")["resolved"]
    assert resolved["amp"] is False and "not CUDA" in resolved["amp_note"]
    assert read_json(tmp_path / "amp" / "config.json")["config"]["amp"] is True  # what was asked is recorded
    assert "amp_scale" not in hist.columns
    for k, v in state(ref).items():  # float32 training, bit for bit
        assert torch.equal(v, state(net)[k]), k
    assert "amp_scaler" not in load_checkpoint(tmp_path / "amp" / "last.pt")["extra"]


def test_channels_last_on_cpu_matches_contiguous(tmp_path):
    """4 training steps, float64 (a float32 comparison over several steps depends on the CPU: a
    ReLU input near 0 may round to the other side in one layout, see tests/test_distributed.py)."""
    f64 = ddp_worker.AsDtype(ddp_worker.FixedPairs(), torch.float64)
    ref = ddp_worker.tiny_net().double()
    h_ref = train_paired(ref, None, f64, None, cfg(), tmp_path / "c", progress=False)
    net = ddp_worker.tiny_net().double()
    h = train_paired(net, None, f64, None, cfg(channels_last=True), tmp_path / "cl", progress=False)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    init = {k: v.double() for k, v in state(ddp_worker.tiny_net()).items()}
    moved = max(float((state(ref)[k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-2
    torch.testing.assert_close(state(net), state(ref), atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=1e-10)
    assert read_json(tmp_path / "cl" / "config.json")["resolved"]["channels_last"] is True
    # the checkpoint loads into a contiguous model
    fresh = ddp_worker.tiny_net().double()
    fresh.load_state_dict(load_checkpoint(tmp_path / "cl" / "last.pt")["model"])
    torch.testing.assert_close(state(fresh), state(net), atol=0, rtol=0)
    # and float32 training runs channels-last (one step: no kink can be met yet)
    one = cfg(steps=1)
    a, b = ddp_worker.tiny_net(), ddp_worker.tiny_net()
    train_paired(a, None, ddp_worker.FixedPairs(), None, one, tmp_path / "c32", progress=False)
    train_paired(b, None, ddp_worker.FixedPairs(), None, one.replace(channels_last=True), tmp_path / "cl32",
                 progress=False)
    torch.testing.assert_close(state(b), state(a), atol=1e-5, rtol=1e-4)


def test_channels_last_unpaired_on_cpu_matches_contiguous(tmp_path):
    """The unpaired loop with ``channels_last`` (3 CUT steps at batch 2), float64 as above."""
    from dehazelab.data.datasets import UnpairedDataset
    from dehazelab.methods import build_method

    def one(out, cl):
        m = build_method("cut", **ddp_worker.CUT_KW)
        for n in m.nets.values():
            n.double()
        ds = UnpairedDataset(ddp_worker.images(4, 1), ddp_worker.images(3, 2), crop=ddp_worker.CROP, augment=False,
                             seed=3)
        c = UnpairedTrainConfig(n_steps=3, n_steps_decay=0, crop=ddp_worker.CROP, batch_size=2, augment=False,
                                seed=1, threads=1, device="cpu", channels_last=cl, log_every=1)
        hist = train_unpaired(m, ds, None, c, out, progress=False)
        return m, hist

    m0, h0 = one(tmp_path / "c", False)
    m1, h1 = one(tmp_path / "cl", True)
    assert m1.nets["G"].model[1].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m1.dehazer().eval()(x), m0.dehazer().eval()(x), atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(h1["loss_G"], h0["loss_G"], rtol=1e-10)


TINY_UNPAIRED = {
    "cut": dict(ngf=4, n_blocks=2, ndf=4, n_layers_D=2, nce_layers=(0, 4, 8, 12, 13), num_patches=16, netF_nc=16),
    "fastcut": dict(ngf=4, n_blocks=2, ndf=4, n_layers_D=2, nce_layers=(0, 4, 8, 12, 13), num_patches=16, netF_nc=16),
    "cyclegan": dict(ngf=4, n_blocks=2, ndf=4, n_layers_D=2, pool_size=2),
    "cddgan": dict(ngf=4, n_blocks=2, ndf=4, nce_layers=(0, 4, 8, 12, 13), num_patches=16, netF_nc=16,
                   num_negatives=16, z_dim=8, pool_size=2),
}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(TINY_UNPAIRED))
def test_channels_last_unpaired_step_gradients_equal_contiguous_float64(name, batch):
    """One training step from the same state, channels-last vs contiguous, in float64 (so float
    rounding is ~1e-15 and any real difference shows): every network's gradient and updated weights.
    At batch 1 the generators' InstanceNorms receive channels-last gradients, which torch 2.14.1's
    CPU instance_norm backward gets wrong (``dehazelab.models.norm``); unguarded, FastCUT's G weight
    gradients were O(1) relative away from the contiguous run."""
    import copy

    from dehazelab.data.datasets import UnpairedDataset
    from dehazelab.methods import build_method

    torch.manual_seed(0)
    ref = build_method(name, **TINY_UNPAIRED[name])
    for net in ref.nets.values():
        net.double()
    cl = copy.deepcopy(ref)
    cl.to("cpu", memory_format=torch.channels_last)
    assert cl.nets[cl.generator_name].model[1].weight.is_contiguous(memory_format=torch.channels_last)
    ds = UnpairedDataset(ddp_worker.images(4, 1, 32, 32), ddp_worker.images(3, 2, 32, 32), crop=32, augment=False,
                         seed=3)
    data = torch.utils.data.default_collate([ds[i] for i in range(batch)])
    data_cl = {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) else v
               for k, v in data.items()}
    logs = {}
    for key, m, b in (("c", ref, data), ("cl", cl, data_cl)):
        torch.manual_seed(1)  # patch positions, pools, FastCUT's flip: the same draws
        logs[key] = m.train_step(b, 0)
    assert logs["c"].keys() == logs["cl"].keys()
    for k in logs["c"]:
        assert logs["cl"][k] == pytest.approx(logs["c"][k], rel=1e-9, abs=1e-12), k
    n_checked = 0
    for net in ref.nets:
        pairs = [(k, p, q) for (k, p), (_, q) in zip(ref.nets[net].named_parameters(), cl.nets[net].named_parameters())
                 if p.grad is not None]
        if not pairs:
            continue
        # relative to the network's largest gradient: conv biases before a non-affine InstanceNorm
        # have an exact gradient of 0 and carry only rounding noise
        scale = max(float(p.grad.abs().max()) for _, p, _ in pairs)
        assert scale > 1e-3
        for k, p, q in pairs:
            err = float((p.grad - q.grad).abs().max())
            assert err <= 1e-9 * scale, f"{net}.{k}: gradient off by {err:.3g} (largest |grad| of {net}: {scale:.3g})"
            n_checked += 1
    assert n_checked > 10


def _old_hash(c) -> str:
    """The hash formula before ``amp`` / ``channels_last`` existed (to_dict without them)."""
    d = {k: v for k, v in c.to_dict().items() if k not in LATE_FIELD_DEFAULTS and k != "channels_last"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def test_new_fields_keep_old_hashes_and_old_checkpoints_resume(tmp_path):
    c = cfg(steps=4)
    assert c.config_hash() == _old_hash(c)
    assert c.replace(amp=True).config_hash() != c.config_hash()
    assert c.replace(channels_last=True).config_hash() != c.config_hash()
    u = UnpairedTrainConfig(n_steps=2, n_steps_decay=2, crop=16)
    assert u.config_hash() == _old_hash(u) and u.replace(channels_last=True).config_hash() != u.config_hash()
    with pytest.raises(TypeError, match="amp must be a bool"):
        cfg(amp=1)

    # an "old" checkpoint: its recorded config has no amp / channels_last
    net, _ = run_paired(tmp_path / "r", c, stop_at=2)
    ck = load_checkpoint(tmp_path / "r" / "last.pt")
    for k in LATE_FIELD_DEFAULTS:
        ck["config"].pop(k)
    save_checkpoint(tmp_path / "r" / "last.pt", ck)
    net, hist = run_paired(tmp_path / "r", c)  # resumes (missing fields = defaults)
    assert read_json(tmp_path / "r" / "config.json")["resolved"]["resumed_from_step"] == 2
    with pytest.raises(ValueError, match="channels_last"):
        run_paired(tmp_path / "r", c.replace(channels_last=True, steps=6))


def test_pick_device_auto_without_cuda_is_cpu():
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    assert pick_device("auto") == torch.device("cpu")


# ------------------------------------------------------------------------------------ GPU
@needs_cuda
class TestOnCuda:
    def test_pick_device_auto_is_cuda(self, monkeypatch):
        assert pick_device("auto").type == "cuda"
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", "0")
        assert pick_device("auto") == torch.device("cuda", 0)

    def test_amp_and_channels_last_train(self, tmp_path):
        c32 = cfg(device="cuda", steps=8, lr=1e-3)
        ref, h_ref = run_paired(tmp_path / "fp32", c32)
        net, hist = run_paired(tmp_path / "amp", c32.replace(amp=True, channels_last=True))
        assert np.isfinite(hist["loss"]).all()
        assert {"amp_scale", "amp_skipped"} <= set(hist.columns)
        assert hist["amp_skipped"].sum() <= 2  # tiny gradients: (almost) no overflow
        resolved = read_json(tmp_path / "amp" / "config.json")["resolved"]
        assert resolved["amp"] is True and resolved["device"].startswith("cuda")
        scaler = load_checkpoint(tmp_path / "amp" / "last.pt")["extra"]["amp_scaler"]
        assert scaler["scale"] > 0
        assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
        init, w32, w16 = state(ddp_worker.tiny_net()), state(ref), state(net)
        moved = torch.sqrt(sum(((w32[k] - init[k]) ** 2).sum() for k in init))
        gap = torch.sqrt(sum(((w16[k] - w32[k]) ** 2).sum() for k in init))
        assert float(gap) < 0.3 * float(moved), (float(gap), float(moved))  # loose: float16 activations

    def test_amp_resume_restores_the_scaler(self, tmp_path):
        c = cfg(device="cuda", steps=6, amp=True)
        run_paired(tmp_path / "r", c, stop_at=3)
        saved = load_checkpoint(tmp_path / "r" / "last.pt")["extra"]["amp_scaler"]
        _, hist = run_paired(tmp_path / "r", c)
        assert len(hist) == 6 and np.isfinite(hist["loss"]).all()
        assert hist["amp_scale"].iloc[2] == pytest.approx(saved["scale"])

    def test_channels_last_outputs_equal_contiguous(self):
        net = ddp_worker.tiny_net().cuda().eval()
        x = torch.rand(2, 3, 32, 32, device="cuda")
        with torch.no_grad():
            y = net(x)
            net_cl = ddp_worker.tiny_net().cuda().eval().to(memory_format=torch.channels_last)
            y_cl = net_cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(y_cl.contiguous(), y, atol=1e-4, rtol=1e-3)

    def test_unpaired_channels_last_on_cuda(self, tmp_path):
        from dehazelab.data.datasets import UnpairedDataset
        from dehazelab.methods import build_method

        m = build_method("cut", **ddp_worker.CUT_KW)
        ds = UnpairedDataset(ddp_worker.images(4, 1), ddp_worker.images(3, 2), crop=ddp_worker.CROP, augment=False,
                             seed=3)
        c = UnpairedTrainConfig(n_steps=2, n_steps_decay=0, crop=ddp_worker.CROP, batch_size=2, augment=False,
                                device="cuda", channels_last=True, log_every=1)
        hist = train_unpaired(m, ds, None, c, tmp_path, progress=False)
        assert np.isfinite(hist["loss_G"]).all() and m.device.type == "cuda"

    def test_inference_on_cuda(self, tmp_path):
        from dehazelab.inference import dehaze_array, export_weights, load_model
        from dehazelab.models.aodnet import AODNet

        torch.manual_seed(0)
        path = export_weights(AODNet(), {"model": "aodnet", "kwargs": {}}, tmp_path / "aod.pt")
        gpu = load_model("aodnet", path)  # device=None: pick_device("auto")
        assert next(gpu.parameters()).device.type == "cuda"
        cpu = load_model("aodnet", path, device="cpu")
        img = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
        np.testing.assert_allclose(dehaze_array(gpu, img), dehaze_array(cpu, img), atol=1e-4)
