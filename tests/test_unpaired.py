"""The unpaired training loop: schedule, decay-phase data, exact resume, divergence stop,
weights_only checkpoints, the ImageTranslator wrapper and the cost measurement.

Networks are tiny (ngf 8, 2 residual blocks, 32² crops, 16 patches) so every run takes well under a
second on one CPU thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dehazelab.data.datasets import UnpairedDataset
from dehazelab.io import read_json
from dehazelab.methods import UnpairedMethod, build_method
from dehazelab.models.resnet_generator import ResnetGenerator
from dehazelab.models.translator import TRANSLATOR_BUILDERS, ImageTranslator, cut_generator, cyclegan_generator
from dehazelab.train.checkpoint import load_checkpoint, model_from_checkpoint
from dehazelab.train.unpaired import (
    DecayPhaseDataset,
    LinearDecay,
    UnpairedTrainConfig,
    measure_cost,
    train_unpaired,
)

from unpaired_helpers import (check_nan_stop, check_resume_is_exact, make_cfg, paired_test_set, read_history,
                              unpaired_set)

TINY = {"ngf": 8, "n_blocks": 2, "ndf": 8}
TINY_NCE = {"nce_layers": (0, 4, 8, 12, 13), "num_patches": 16, "netF_nc": 16}

pytestmark = pytest.mark.usefixtures("no_progress_bars")


def tiny_method(name: str, **kw) -> UnpairedMethod:
    extra = dict(TINY_NCE) if name in ("cut", "fastcut") else {"pool_size": 2}
    extra.update(kw)
    return build_method(name, **TINY, **extra)


# ------------------------------------------------------------------------------------ schedule


def test_linear_decay_closed_form_per_step_and_per_unit():
    f = LinearDecay(3, 4)
    assert [f(t) for t in range(7)] == pytest.approx([1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5])
    g = LinearDecay(2, 2, every=2)  # two constant "epochs" of 2 steps, two decay epochs
    assert [g(t) for t in range(8)] == pytest.approx([1, 1, 1, 1, 2 / 3, 2 / 3, 1 / 3, 1 / 3])


def test_loop_learning_rates_follow_the_closed_form(tmp_path):
    method = tiny_method("cut", lr=1e-3)
    cfg = make_cfg(n_steps=2, n_steps_decay=3, eval_every=0)
    hist = train_unpaired(method, unpaired_set(), None, cfg, tmp_path)
    expected = [1e-3 * (1 - max(0, t + 1 - 2) / 4) for t in range(5)]  # lr of the update after t steps
    assert hist["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    assert hist["decay_phase"].tolist() == [0, 0, 1, 1, 1]
    # every optimiser follows the same schedule; after the last scheduler step lr = lr0 * f(5) = 0
    for opt in method.optimizers.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_config_validation():
    with pytest.raises(ValueError, match="lr_every"):
        UnpairedTrainConfig(n_steps=3, n_steps_decay=4, crop=32, lr_every=2)
    with pytest.raises(ValueError, match="decay_data"):
        UnpairedTrainConfig(n_steps=3, n_steps_decay=4, crop=32, decay_data="crop")
    with pytest.raises(ValueError, match="unknown"):
        UnpairedTrainConfig.from_dict({"n_steps": 1, "n_steps_decay": 0, "crop": 8, "step": 3})
    cut = UnpairedTrainConfig.from_epochs(200, 200, 5, crop=32)  # CUT's recipe, 5 iterations per epoch
    assert (cut.n_steps, cut.n_steps_decay, cut.lr_every) == (1000, 1000, 5)
    f = LinearDecay.from_config(cut)
    assert f(999) == 1.0 and f(1000) == pytest.approx(1 - 1 / 201) and f(1999) == pytest.approx(1 / 201)
    cfg = UnpairedTrainConfig(n_steps=3, n_steps_decay=4, crop=32)
    assert cfg.steps == 7 and UnpairedTrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.config_hash() != cfg.replace(seed=1).config_hash()


# ------------------------------------------------------------------------------- decay phase


def _pil_bicubic(img: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img[..., c], mode="F").resize((size, size), Image.BICUBIC))
                     for c in range(3)], axis=-1)


def test_decay_phase_dataset_resizes_whole_images():
    ds = unpaired_set(augment=False)
    wrapped = DecayPhaseDataset(ds)
    train_item = wrapped[1]
    assert train_item["hazy"].shape == (3, 32, 32)
    assert torch.equal(train_item["hazy"], ds[1]["hazy"])
    wrapped.set_phase("decay")
    item = wrapped[1]
    assert item["hazy"].shape == item["clear"].shape == (3, 32, 32)
    assert item["clear_name"] == train_item["clear_name"]  # same clear image drawn in both phases
    full = ds.hazy_items[1][0]  # the untransformed 40x48 array
    got = item["hazy"].permute(1, 2, 0).numpy()
    want = _pil_bicubic(full, 32)
    assert np.abs(got - want).mean() < 2e-3 and np.abs(got - want).max() < 3e-2
    assert float(item["hazy"].min()) >= 0 and float(item["hazy"].max()) <= 1
    with pytest.raises(ValueError):
        wrapped.set_phase("finetune")


class RecordingMethod(UnpairedMethod):
    """A one-conv 'method' that records the batches it is given (for loop-only tests)."""

    name = "recording"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.nets = {"G": nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())}
        self.optimizers = {"G": torch.optim.Adam(self.nets["G"].parameters(), lr=1e-3)}
        self.seen: list[dict] = []

    def hparams(self):
        return {"method": self.name}

    def model_spec(self):
        return {"model": self.name, "kwargs": {}}

    def train_step(self, batch, step):
        self.seen.append({k: (v.clone() if isinstance(v, torch.Tensor) else list(v)) for k, v in batch.items()})
        a, b = self._inputs(batch)
        logs: dict[str, float] = {}
        loss = (self.nets["G"](a) - b).abs().mean()
        logs["G"] = float(loss.detach())
        self._backward_step(loss, ["G"], "G", logs)
        return logs


def test_loop_switches_the_crop_off_in_the_decay_phase(tmp_path):
    ds = unpaired_set(augment=False)
    method = RecordingMethod()
    train_unpaired(method, ds, None, make_cfg(n_steps=2, n_steps_decay=3, augment=False), tmp_path)
    cfg_json = read_json(tmp_path / "config.json")
    assert "DecayPhaseDataset" in cfg_json["resolved"]["decay_phase_data"]
    full = UnpairedDataset([x for x, _ in ds.hazy_items], [x for x, _ in ds.clear_items], crop=None, augment=False,
                           seed=3)
    for step, batch in enumerate(method.seen):
        name = batch["hazy_name"][0]
        idx = int(name.replace("hazy", ""))
        hazy = batch["hazy"][0]
        assert hazy.shape == (3, 32, 32)
        src = full[idx]["hazy"]  # 3x40x48 whole image
        resized = F.interpolate(src[None], size=(32, 32), mode="bicubic", align_corners=False, antialias=True)[0]
        is_resized = torch.allclose(hazy, resized.clamp(0, 1), atol=1e-6)
        # a crop is a window of the whole image
        is_crop = any(torch.equal(hazy, src[:, y:y + 32, x:x + 32]) for y in range(9) for x in range(17))
        assert (is_resized, is_crop) == ((False, True) if step < 2 else (True, False)), step


def test_keep_crops_when_asked(tmp_path):
    method = RecordingMethod()
    train_unpaired(method, unpaired_set(), None, make_cfg(n_steps=1, n_steps_decay=2, decay_data="keep"), tmp_path)
    assert read_json(tmp_path / "config.json")["resolved"]["decay_phase_data"] == "crops throughout"


def test_crop_mismatch_warns(tmp_path):
    with pytest.warns(UserWarning, match="crop"):
        train_unpaired(RecordingMethod(), unpaired_set(crop=32), None, make_cfg(n_steps=1, n_steps_decay=0, crop=24),
                       tmp_path)


# ------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("name", ["cut", "fastcut", "cyclegan"])
def test_resume_is_exact(tmp_path, name):
    run = check_resume_is_exact(lambda: tiny_method(name), tmp_path)
    if name == "cyclegan":
        assert len(run.resumed.pools["fake_B"].images) == 2  # pool contents were restored and used


def test_resume_refuses_other_config_or_hparams(tmp_path):
    cfg = make_cfg(eval_every=0)
    train_unpaired(tiny_method("fastcut"), unpaired_set(), None, cfg, tmp_path, stop_at=1)
    with pytest.raises(ValueError, match="n_steps_decay"):
        train_unpaired(tiny_method("fastcut"), unpaired_set(), None, cfg.replace(n_steps_decay=5), tmp_path)
    with pytest.raises(ValueError, match="lambda_NCE"):
        train_unpaired(tiny_method("fastcut", lambda_NCE=1.0), unpaired_set(), None, cfg, tmp_path)
    # bookkeeping fields may change
    hist = train_unpaired(tiny_method("fastcut"), unpaired_set(), None, cfg.replace(log_every=2), tmp_path)
    assert hist["step"].iloc[-1] == cfg.steps


# ------------------------------------------------------------------------- divergence, files


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_cfg(n_steps=4, n_steps_decay=4, eval_every=0, ckpt_every=2)
    check_nan_stop(tiny_method("cut"), cfg, tmp_path, bad=6, last_good_step=4)
    # resuming from last.pt with clean data finishes the run
    hist = train_unpaired(tiny_method("cut"), unpaired_set(), None, cfg, tmp_path)
    assert hist["step"].tolist() == list(range(1, 9))


@pytest.mark.parametrize("name", ["fastcut", "cyclegan"])
def test_checkpoints_load_weights_only_and_rebuild_the_dehazer(tmp_path, name):
    method = tiny_method(name)
    cfg = make_cfg(n_steps=2, n_steps_decay=0, eval_every=1, snapshot_every=1)
    train_unpaired(method, unpaired_set(), paired_test_set(), cfg, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert {"last.pt", "best.pt", "step_00000001.pt", "step_00000002.pt"} <= set(files)
    for p in tmp_path.glob("*.pt"):
        ck = torch.load(p, weights_only=True)  # must not raise
        assert ck["model_spec"] == method.model_spec()
    dehazer = model_from_checkpoint(tmp_path / "last.pt", TRANSLATOR_BUILDERS)
    x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(dehazer(x), method.dehazer()(x))
    best = load_checkpoint(tmp_path / "best.pt")["best"]
    hist = read_history(tmp_path)
    assert best["value"] == pytest.approx(hist["psnr"].max()) and best["step"] == int(hist.loc[hist["psnr"].idxmax(), "step"])


def test_history_records_cost_columns(tmp_path):
    hist = train_unpaired(tiny_method("fastcut"), unpaired_set(), paired_test_set(), make_cfg(n_steps=1, n_steps_decay=1),
                          tmp_path)
    assert (hist["sec_per_step"] > 0).all() and (hist["peak_mem_mb"] > 0).all()
    assert hist["psnr"].notna().sum() == 1 and math.isfinite(hist["psnr"].iloc[-1])


# --------------------------------------------------------------------------------- translator


def test_translator_round_trips_an_identity_generator():
    x = torch.rand(2, 3, 30, 34)  # not a multiple of 4: exercises the padding
    seen = {}

    class Identity(nn.Module):
        def forward(self, y):
            seen["min"], seen["max"], seen["shape"] = float(y.min()), float(y.max()), tuple(y.shape)
            return y

    t = ImageTranslator(Identity())
    out = t(torch.cat([x, torch.zeros(1, 3, 30, 34), torch.ones(1, 3, 30, 34)]))
    assert seen["shape"] == (4, 3, 32, 36)
    assert seen["min"] == -1.0 and seen["max"] == 1.0  # [0,1] was mapped to [-1,1]
    assert out.shape == (4, 3, 30, 34)
    torch.testing.assert_close(out[:2], x, rtol=0, atol=1e-6)


def test_translator_maps_unit_range_to_unit_range():
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=1)
    t = ImageTranslator(g)
    x = torch.rand(1, 3, 29, 31)
    with torch.no_grad():
        y = t(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # same as the manual conversion on an input whose size needs no padding
    x4 = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(t(x4), (g(x4 * 2 - 1) + 1) / 2)


def test_translator_builders():
    assert cut_generator(ngf=8, n_blocks=1).generator.antialias is True
    assert cyclegan_generator(ngf=8, n_blocks=1).generator.antialias is False
    with pytest.raises(TypeError, match="unknown"):
        cut_generator(ngf=8, dropout=True)
    assert set(TRANSLATOR_BUILDERS) == {"cut", "fastcut", "cyclegan"}


# ------------------------------------------------------------------------------------- cost


def test_measure_cost_runs_in_a_fresh_process():
    cfg = UnpairedTrainConfig(n_steps=1, n_steps_decay=0, crop=32, threads=1, device="cpu")
    res = measure_cost("fastcut", cfg, n_iter=2, warmup=1, method_kwargs={**TINY, **TINY_NCE})
    assert res["device"] == "cpu" and res["memory_kind"] == "process peak RSS"
    assert res["sec_per_iter"] > 0 and res["peak_mem_mb"] >= res["baseline_mem_mb"] > 0
    assert res["n_params"]["G"] == sum(p.numel() for p in tiny_method("fastcut").generator().parameters())
