"""IICL in the registry: ``iicl`` / ``iicl-aecrnet`` / ``iicl-aodnet``, and their exported
checkpoints rebuilt from the file alone (``load_model`` and ``python -m dehazelab dehaze``)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dehazelab.data.images import read_image, write_image
from dehazelab.inference import dehaze_array, export_weights, load_model
from dehazelab.models import MODELS, build


def _perturbed(model, seed=1):
    """Weights that differ from any fresh initialisation, so a checkpoint that was not loaded shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_backbone_is_defaulted_and_checked():
    assert {"iicl", "iicl-aecrnet", "iicl-aodnet"} <= set(MODELS)
    assert type(build("iicl-aodnet", prm_width=4).backbone).__name__ == "AODNet"
    assert type(build("iicl-aecrnet", prm_width=4, backbone_kwargs={"ngf": 8}).backbone).__name__ == "AECRNet"
    assert type(build("iicl", prm_width=4, backbone_kwargs={"ngf": 8}).backbone).__name__ == "AECRNet"
    # a recorded backbone that contradicts the name is an error, not silently obeyed
    with pytest.raises(ValueError, match="aodnet"):
        build("iicl-aodnet", backbone="aecrnet")


def test_iicl_aodnet_checkpoint_reloads_and_reproduces(tmp_path):
    torch.manual_seed(0)
    spec = {"model": "iicl-aodnet", "kwargs": {"backbone": "aodnet", "prm_width": 8, "use_prm": True}}
    net = _perturbed(build(spec["model"], **spec["kwargs"]))
    path = export_weights(net, spec, tmp_path / "iicl-aodnet_test.pt")
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net(x)
        fresh = build(spec["model"], **spec["kwargs"]).eval()(x)
    assert not torch.allclose(fresh, want, atol=1e-4)  # the comparison below can fail
    loaded = load_model("iicl-aodnet", path, device="cpu")
    assert type(loaded.backbone).__name__ == "AODNet" and loaded.prm.width == 8
    with torch.no_grad():
        assert torch.equal(loaded(x), want)
    # the name of the checkpoint is the one to load it with
    with pytest.raises(SystemExit, match="iicl-aodnet"):
        load_model("iicl", path, device="cpu")


def test_cli_dehaze_with_iicl_aodnet_weights(tmp_path):
    torch.manual_seed(0)
    spec = {"model": "iicl-aodnet", "kwargs": {"prm_width": 8}}  # backbone from the registry default
    net = _perturbed(build(spec["model"], **spec["kwargs"]))
    path = export_weights(net, spec, tmp_path / "w.pt")
    img = np.random.default_rng(0).uniform(0.2, 0.9, (20, 28, 3)).astype(np.float32)
    write_image(tmp_path / "in" / "a.png", img)
    img = read_image(tmp_path / "in" / "a.png")  # the 8-bit image the CLI reads
    r = subprocess.run([sys.executable, "-m", "dehazelab", "dehaze", tmp_path / "in" / "a.png",
                        "--model", "iicl-aodnet", "--weights", path, "--out", tmp_path / "out"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = read_image(tmp_path / "out" / "a_iicl-aodnet.png")
    want = dehaze_array(net, img)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6
    assert np.abs(want - img).max() > 2 / 255  # the model changes the image: the check above is not trivial
