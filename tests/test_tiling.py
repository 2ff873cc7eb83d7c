"""Tiled inference (``dehazelab.tiling``): geometry, tiled == whole on small images, the CLI, memory."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dehazelab import metrics, models
from dehazelab.data.images import read_image
from dehazelab.inference import dehaze_array, export_weights
from dehazelab.models.dcp import DCP
from dehazelab.tiling import (
    GlobalOpRecorder,
    TilePlan,
    blend_weights,
    dehaze_auto,
    dehaze_tiled,
    run_whole,
    size_multiple,
    tile_spans,
)


def _image(h, w, seed=0):
    """Blocky colours + a little noise: structure at several scales, values in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    img = np.kron(base, np.ones((8, 8, 1), np.float32))[:h, :w] * 0.7 + 0.15
    return np.clip(img + rng.normal(0, 0.03, img.shape).astype(np.float32), 0, 1)


class Rescaled(nn.Module):
    """``(f(x) + 1) / 2``: random AECR-Net / IICL output a Tanh just below 0, which the [0, 1] clamp
    would flatten to a constant image; rescaling is pixel-wise, so it does not change what tiling does."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return (self.net(x) + 1) / 2


# (registry name, kwargs, wrap): small random-weight instances of every trainable model type
TRAINABLE = [
    ("aodnet", {}, False),
    ("aecrnet", {"ngf": 16}, True),
    ("cut", {"ngf": 16, "n_blocks": 4}, False),
    ("fastcut", {"ngf": 16, "n_blocks": 4}, False),
    ("cyclegan", {"ngf": 16, "n_blocks": 4}, False),
    ("cddgan", {"ngf": 16, "n_blocks": 4}, False),
    ("iicl", {"backbone_kwargs": {"ngf": 16}}, True),
    ("iicl-aodnet", {}, False),
]


def _model(name, kwargs, wrap):
    torch.manual_seed(0)
    net = models.build(name, **kwargs).eval()
    return Rescaled(net).eval() if wrap else net


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,tile,overlap,m", [(457, 128, 32, 4), (301, 128, 64, 4), (1000, 512, 64, 4),
                                                   (50, 128, 32, 4), (129, 128, 32, 1), (130, 64, 16, 4)])
def test_tile_spans_cover_align_and_overlap(length, tile, overlap, m):
    spans = tile_spans(length, tile, overlap, m)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 % m == 0 and s0 < s1 and e0 - s1 >= overlap  # aligned, ordered, overlapping enough
    assert all(e - s <= tile + m for s, e in spans)


@pytest.mark.parametrize("shape", [(301, 457), (50, 70), (1024, 1100), (129, 513)])
def test_blend_weights_sum_to_one(shape):
    plan = TilePlan(tile=128, overlap=48, margin=12, multiple=4)
    total = np.zeros(shape)
    n = 0
    for rows, cols, w in blend_weights(shape, plan):
        assert w.shape == (rows.stop - rows.start, cols.stop - cols.start) and w.min() >= 0
        total[rows, cols] += w
        n += 1
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert (n == 1) == (max(shape) <= 128)


def test_size_multiple():
    assert size_multiple(models.build("aecrnet", ngf=16)) == 4
    assert size_multiple(models.build("cut", ngf=8, n_blocks=1)) == 4
    assert size_multiple(models.build("cyclegan", ngf=8, n_blocks=1)) == 4
    assert size_multiple(models.build("aodnet")) == 1
    assert size_multiple(models.build("iicl", backbone_kwargs={"ngf": 16})) == 4
    assert size_multiple(DCP()) == 1


# ------------------------------------------------------------------------------------------------
# tiled == whole on an image small enough to run whole
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs,wrap", TRAINABLE, ids=[t[0] for t in TRAINABLE])
def test_tiled_matches_whole(name, kwargs, wrap):
    img = _image(301, 457)  # odd sides: AECR-Net (multiple of 4) needs the padding
    gt = np.clip(1.2 * img - 0.1, 0, 1)  # any fixed reference: the PSNRs against it are compared
    model = _model(name, kwargs, wrap)
    whole = run_whole(model, img)
    tiled = dehaze_tiled(model, img, tile=160, overlap=64)
    assert tiled.shape == img.shape and tiled.dtype == np.float32
    assert len(tile_spans(301, 160, 64, 4)) == 3 and len(tile_spans(457, 160, 64, 4)) == 5  # really tiled
    assert abs(metrics.psnr(tiled, gt) - metrics.psnr(whole, gt)) <= 0.1
    # much stronger than 0.1 dB: tiled and whole agree to > 40 dB, relative to the output's spread
    assert metrics.psnr(tiled, whole) > 40
    assert np.sqrt(np.mean((tiled - whole) ** 2)) < 0.05 * whole.std() + 1e-6
    if not wrap:  # with sides that are multiples of 4 no padding is needed: run_whole is dehaze_array
        np.testing.assert_allclose(run_whole(model, img[:300, :456]), dehaze_array(model, img[:300, :456]),
                                   atol=1e-6)


def test_global_ops_are_recorded_and_replayed():
    model = _model("cut", {"ngf": 8, "n_blocks": 2}, False)
    rec = GlobalOpRecorder()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        with rec.record():
            y = model(x)
        assert len(rec) == 1 + 2 + 2 * 2 + 2  # InstanceNorms: stem, 2 downs, 2 per block, 2 ups
        with rec.replay():
            z = model(x)
    torch.testing.assert_close(y, z, atol=1e-5, rtol=0)
    with torch.no_grad():
        with rec.replay():
            with pytest.raises(RuntimeError):  # fewer / more global ops than recorded is refused
                model(x)
                model(x)


def test_small_image_is_one_tile_equal_to_whole():
    model = _model("cyclegan", {"ngf": 8, "n_blocks": 2}, False)
    img = _image(50, 70)
    out = dehaze_tiled(model, img, tile=128, overlap=32)
    assert out.shape == img.shape
    np.testing.assert_allclose(out, run_whole(model, img), atol=1e-5)


def test_dcp_tiled_equals_whole():
    dcp = DCP(r=8, patch=7)  # small filters so that a small image is cut into several tiles
    img = _image(301, 457)
    out = dehaze_tiled(dcp, img, tile=96)
    assert out.shape == img.shape
    np.testing.assert_allclose(out, dehaze_array(dcp, img), atol=1e-5)


def test_auto_runs_small_images_whole():
    model = _model("aodnet", {}, False)
    img = _image(120, 160)
    np.testing.assert_array_equal(dehaze_auto(model, img), dehaze_array(model, img))
    np.testing.assert_array_equal(dehaze_auto(model, img, tile=0), dehaze_array(model, img))
    assert not np.array_equal(dehaze_auto(model, img, tile=64, overlap=16), np.zeros_like(img))


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def aodnet_weights(tmp_path):
    torch.manual_seed(0)
    return export_weights(models.build("aodnet"), {"model": "aodnet", "kwargs": {}}, tmp_path / "aod.pt")


def test_cli_tiled_folder_writes_pngs(tmp_path, aodnet_weights):
    src = tmp_path / "in"
    src.mkdir()
    for i, (h, w) in enumerate([(201, 303), (90, 120)]):
        Image.fromarray((_image(h, w, i) * 255).round().astype(np.uint8)).save(src / f"im{i}.png")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}  # the root conftest hides bars
    r = subprocess.run([sys.executable, "-m", "dehazelab", "dehaze", src, "--model", "aodnet", "--weights",
                        aodnet_weights, "--out", out, "--tile", "96", "--overlap", "32"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["im0_aodnet.png", "im1_aodnet.png"]
    assert "dehaze (aodnet)" in r.stderr and "2/2" in r.stderr  # the progress bar
    torch.manual_seed(0)
    model = models.build("aodnet").eval()
    for i in range(2):
        hazy = read_image(src / f"im{i}.png")
        got = read_image(out / f"im{i}_aodnet.png")
        assert got.shape == hazy.shape
        assert np.abs(got - dehaze_tiled(model, hazy, tile=96, overlap=32)).max() <= 1 / 255 + 1e-6


def test_cli_rejects_bad_tile(tmp_path, aodnet_weights):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    r = subprocess.run([sys.executable, "-m", "dehazelab", "dehaze", tmp_path / "a.png", "--model", "aodnet",
                        "--weights", aodnet_weights, "--out", tmp_path / "o", "--tile", "64", "--overlap", "64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--overlap" in r.stderr


# ------------------------------------------------------------------------------------------------
# memory: a 4000x3000 photo in <= 2 GB resident
# ------------------------------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import sys
    from dehazelab.cli import main
    rc = main(sys.argv[1:])
    peak = None
    try:  # this process's own high-water mark (the pre-exec parent is not counted, unlike ru_maxrss)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("PEAK_MB", peak)
    sys.exit(rc)
    """
)


@pytest.mark.parametrize("name,kwargs", [("cyclegan", {"ngf": 4, "n_blocks": 1})], ids=["cyclegan-tiny"])
def test_cli_4000x3000_stays_under_2gb(tmp_path, name, kwargs):
    torch.manual_seed(0)
    weights = export_weights(models.build(name, **kwargs), {"model": name, "kwargs": kwargs}, tmp_path / "w.pt")
    h, w = 3000, 4000
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin(xx / 37.0) * np.cos(yy / 53.0)], axis=-1)
    Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / "big.jpg", quality=90)
    del img, yy, xx
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _CHILD, "dehaze", tmp_path / "big.jpg", "--model", name, "--weights",
                        weights, "--out", out], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    peak = float(r.stdout.split("PEAK_MB")[-1])
    with Image.open(out / f"big_{name}.png") as im:
        assert im.size == (w, h)
    # InstanceNorm statistics from the downscaled image (a 4000x3000 image is far above WHOLE_MAX_PIXELS)
    assert peak <= 2048, f"peak resident memory {peak:.0f} MB"
    print(f"4000x3000 through the CLI ({name} {kwargs}): peak resident {peak:.0f} MB")


SMALL_KW = {"aecrnet": {"ngf": 8}, "iicl": {"backbone_kwargs": {"ngf": 8}}, "cut": {"ngf": 8, "n_blocks": 2}, "fastcut": {"ngf": 8, "n_blocks": 2},
            "cyclegan": {"ngf": 8, "n_blocks": 2}, "aodnet": {}}


@pytest.mark.parametrize("name", sorted(SMALL_KW))
@pytest.mark.parametrize("hw", [(1, 1), (3, 3), (4, 4), (7, 7), (45, 63)])
def test_every_network_runs_any_image_size_whole(name, hw):
    """AECR-Net/IICL need sides divisible by 4 and the CUT family fail below ~8 px: padded to the size
    multiple and to MIN_SIDE, then cropped back, every size runs and keeps its shape."""
    torch.manual_seed(0)
    model = models.build(name, **SMALL_KW[name]).eval()
    img = _image(*hw, seed=1)
    out = dehaze_array(model, img)
    assert out.shape == img.shape and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    tiled = dehaze_auto(model, img, tile=4, overlap=1) if min(hw) > 4 else dehaze_auto(model, img, tile=4, overlap=0)
    assert tiled.shape == img.shape


def test_padding_to_min_side_is_cropped_back_exactly():
    """On a model that works pixel by pixel (AOD-Net's 1x1 convs are not: use a 1x1 conv net), the
    padded run equals the unpadded one on the kept pixels."""
    from dehazelab.tiling import MIN_SIDE, run_whole

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Sigmoid()).eval()
    img = _image(3, 5, seed=2)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        direct = net(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(run_whole(net, img, multiple=4), direct, atol=1e-7)
    assert MIN_SIDE >= 8
