"""The command line as a user runs it: ``python -m dehazelab ...`` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dehazelab import metrics, paths
from dehazelab.data import haze
from dehazelab.data.images import read_image
from dehazelab.models.dcp import dehaze_dcp


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dehazelab", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _scene(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    # saturated colour blocks: a dark channel near 0, as DCP assumes
    J = np.zeros((h, w, 3), np.float32)
    for y in range(0, h, 16):
        for x in range(0, w, 16):
            J[y : y + 16, x : x + 16, rng.integers(3)] = rng.uniform(0.5, 1.0)
    depth = np.tile(np.linspace(0.2, 1.0, w, dtype=np.float32), (h, 1))
    return J, depth


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)


@pytest.fixture()
def sots_folder(tmp_path):
    root = tmp_path / "mysots"
    for scene in (7, 8):
        J, d = _scene(scene)
        _save(root / "gt" / f"{scene}.png", J)
        for level in (1, 2):
            I, _ = haze.synthesize(J, d, beta=0.8 * level, A=0.9)
            _save(root / "hazy" / f"{scene}_{level}.png", I)
    return root


@pytest.fixture()
def nh_folder(tmp_path):
    root = tmp_path / "mynh"
    for i in (1, 2):
        J, d = _scene(10 + i)
        I, _ = haze.synthesize(J, d, beta=1.0, A=0.8)
        _save(root / f"{i:02d}_GT.png", J)
        _save(root / f"{i:02d}_hazy.png", I)
    return root


def _independent_means(pairs):
    ps, ss = [], []
    for hz, gt in pairs:
        J, _, _ = dehaze_dcp(read_image(hz))
        g = read_image(gt)
        ps.append(metrics.psnr(J, g))
        ss.append(metrics.ssim(J, g))
    return float(np.mean(ps)), float(np.mean(ss))


def test_evaluate_json_on_sots_layout(sots_folder, tmp_path):
    csv = tmp_path / "per_image.csv"
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--json", "--csv", csv)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 4 and out["layout"] == "sots"
    pairs = [(sots_folder / "hazy" / f"{s}_{l}.png", sots_folder / "gt" / f"{s}.png") for s in (7, 8) for l in (1, 2)]
    p, s = _independent_means(pairs)
    assert out["psnr"] == pytest.approx(p, abs=1e-6) and out["ssim"] == pytest.approx(s, abs=1e-6)
    assert out["psnr"] > out["psnr_hazy"]
    rows = csv.read_text().strip().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("hazy,clear,scene,level,psnr,ssim")


def test_evaluate_json_on_nh_layout(nh_folder, tmp_path):
    r = run_cli("evaluate", "--model", "dcp", "--data", nh_folder, "--json", "--csv", tmp_path / "x.csv")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 2 and out["layout"] == "nh-haze"
    p, s = _independent_means([(nh_folder / f"{i:02d}_hazy.png", nh_folder / f"{i:02d}_GT.png") for i in (1, 2)])
    assert out["psnr"] == pytest.approx(p, abs=1e-6)


def test_evaluate_bad_folder_names_the_file(sots_folder, tmp_path):
    (sots_folder / "gt" / "8.png").unlink()  # hazy 8_* now has no GT
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--json", "--csv", tmp_path / "x.csv")
    assert r.returncode == 2
    assert "8_1.png" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("evaluate", "--model", "dcp", "--data", empty)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr


def test_dehaze_files_and_folders(sots_folder, tmp_path):
    out = tmp_path / "out"
    r = run_cli("dehaze", sots_folder / "hazy", sots_folder / "gt" / "7.png", "--model", "dcp", "--out", out)
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["7_1_dcp.png", "7_2_dcp.png", "7_dcp.png", "8_1_dcp.png", "8_2_dcp.png"]
    J, _, _ = dehaze_dcp(read_image(sots_folder / "hazy" / "7_1.png"))
    got = read_image(out / "7_1_dcp.png")
    assert np.abs(got - J).max() <= 1 / 255 + 1e-6


def test_dehaze_refuses_to_overwrite_inputs(tmp_path):
    J, _ = _scene(1)
    _save(tmp_path / "a.png", J)
    _save(tmp_path / "a_dcp.png", J)  # dehazing a.png into the same folder would overwrite this input
    before = (tmp_path / "a_dcp.png").read_bytes()
    r = run_cli("dehaze", tmp_path, "--model", "dcp", "--out", tmp_path)
    assert r.returncode != 0 and "refusing to overwrite" in r.stderr and "a_dcp.png" in r.stderr
    assert (tmp_path / "a_dcp.png").read_bytes() == before
    assert not (tmp_path / "a_dcp_dcp.png").exists()  # nothing written before the refusal


def test_dehaze_missing_input(tmp_path):
    r = run_cli("dehaze", tmp_path / "nothere.png", "--model", "dcp", "--out", tmp_path / "o")
    assert r.returncode == 2 and "nothere.png" in r.stderr and "Traceback" not in r.stderr


def test_dehaze_bad_image_named(tmp_path):
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    r = run_cli("dehaze", bad, "--model", "dcp", "--out", tmp_path / "out")
    assert r.returncode == 1 and "broken.png" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("dehaze", bad, "--model", "dcp", "--out", tmp_path / "out", "--stop-on-error")
    assert r.returncode == 2 and "broken.png" in r.stderr and "Traceback" not in r.stderr


def test_unknown_model(tmp_path):
    r = run_cli("dehaze", tmp_path, "--model", "nope", "--out", tmp_path / "o")
    assert r.returncode != 0 and "unknown model" in r.stderr


def test_models_lists_registry():
    r = run_cli("models")
    assert r.returncode == 0 and "dcp" in r.stdout


def _run_folder(runs, run_id, spec, weights, psnr, ssim, label):
    import torch

    d = runs / run_id
    d.mkdir(parents=True)
    torch.save(weights, d / "weights.pt")
    summary = {"id": run_id, "label": label, "spec": {**spec, "data": {"test": {"name": "sots-test"}}},
               "psnr": psnr, "ssim": ssim, "n_test": 20}
    (d / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


def test_models_prints_each_committed_checkpoint_and_the_scores_of_its_run(tmp_path, monkeypatch):
    """A temporary results folder: the numbers come from the run whose weights equal the committed
    file (a paired run's checkpoint; one of an unpaired run's networks), never from elsewhere."""
    import torch

    from dehazelab import models
    from dehazelab.inference import export_weights
    from dehazelab.methods import build_method

    results = tmp_path / "results"
    small, runs = results / "small", results / "runs" / "small"
    # AOD-Net: the committed file is a copy of the seed-0 run's weights.pt; a seed-1 run is a decoy
    torch.manual_seed(0)
    aod = export_weights(models.build("aodnet"), {"model": "aodnet", "kwargs": {}},
                         small / "01_cr_aecrnet" / "aodnet_small.pt")
    torch.manual_seed(1)
    decoy = {"format": "dehazelab-weights-1", "model": models.build("aodnet").state_dict(),
             "model_spec": {"model": "aodnet", "kwargs": {}}}
    spec = {"kind": "paired", "model": "aodnet"}
    _run_folder(runs, "aodnet-s1-0000000000", spec, decoy, 11.0, 0.1, "AOD-Net")
    _run_folder(runs, "aodnet-s0-ffffffffff", spec, torch.load(aod, weights_only=True), 19.5083, 0.75821, "AOD-Net")
    # CUT: the committed file is the exported dehazer; the run keeps every network of the method
    cut = build_method("cut", ngf=4, ndf=4, n_blocks=5, num_patches=8, netF_nc=8)
    export_weights(cut.dehazer(), cut.model_spec(), small / "02_cut_fastcut" / "cut_small.pt")
    nets = {"format": "dehazelab-method-weights-1", "method": "cut",
            "nets": {k: {n: t.detach().clone() for n, t in net.state_dict().items()} for k, net in cut.nets.items()}}
    _run_folder(runs, "cut-s0-1234567890", {"kind": "unpaired", "method": "cut"}, nets, 14.25, 0.61234, "cut")
    # FastCUT: a file whose run is not there
    fast = build_method("fastcut", ngf=4, ndf=4, n_blocks=5, num_patches=8, netF_nc=8, seed=1)
    export_weights(fast.dehazer(), fast.model_spec(), small / "02_cut_fastcut" / "fastcut_small.pt")

    monkeypatch.setenv("DEHAZELAB_RESULTS", str(results))
    r = run_cli("models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    blocks = {}
    for line in r.stdout.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = []
        else:
            blocks[name].append(line.strip())
    assert blocks["aodnet"] == [
        "small weights: results/small/01_cr_aecrnet/aodnet_small.pt",
        "test: PSNR 19.51 dB, SSIM 0.7582 on 20 sots-test images (run aodnet-s0-ffffffffff, 'AOD-Net')"]
    assert blocks["cut"] == [
        "small weights: results/small/02_cut_fastcut/cut_small.pt",
        "test: PSNR 14.25 dB, SSIM 0.6123 on 20 sots-test images (run cut-s0-1234567890, 'cut')"]
    assert blocks["fastcut"][0] == "small weights: results/small/02_cut_fastcut/fastcut_small.pt"
    assert blocks["fastcut"][1].startswith("test PSNR/SSIM: not recorded (no run in runs/small/")
    assert blocks["aecrnet"] == ["small weights: not committed"]
    assert blocks["dcp"] == []  # no training, no weights
    assert set(blocks) == set(models.MODELS)


def test_verify_real_data():
    root = paths.data_root()
    if root is None or not (root / "sots-indoor").is_dir():
        pytest.skip("no benchmark data")
    r = run_cli("verify", root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_verify_reports_mismatch(tmp_path):
    root = paths.data_root()
    if root is None or not (root / "nh-haze").is_dir():
        pytest.skip("no benchmark data")
    import shutil

    shutil.copytree(root, tmp_path / "copy")
    f = tmp_path / "copy" / "nh-haze" / "51_GT.png"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    r = run_cli("verify", tmp_path / "copy")
    assert r.returncode == 1 and "51_GT.png" in (r.stdout + r.stderr)


def test_dehaze_never_writes_two_outputs_to_one_path(tmp_path):
    """A folder's tree is mirrored, and x.jpg beside x.png keep their extensions: 5 inputs, 5 files."""
    J, _ = _scene(2)
    m = tmp_path / "m"
    for rel in ("a.png", "sub/a.png", "x.png", "sub/deeper/b.png"):
        _save(m / rel, J)
    m.joinpath("x.jpg").parent.mkdir(exist_ok=True)
    Image.fromarray((J * 255).round().astype(np.uint8)).save(m / "x.jpg")
    out = tmp_path / "out"
    r = run_cli("dehaze", m, "--model", "dcp", "--out", out)
    assert r.returncode == 0, r.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a_dcp.png", "sub/a_dcp.png", "sub/deeper/b_dcp.png", "x_jpg_dcp.png", "x_png_dcp.png"]
    assert "wrote 5 image(s)" in r.stderr


def test_dehaze_refuses_a_clash_it_cannot_resolve_before_writing(tmp_path):
    J, _ = _scene(3)
    _save(tmp_path / "one" / "a.png", J)
    _save(tmp_path / "two" / "a.png", J)
    out = tmp_path / "out"
    r = run_cli("dehaze", tmp_path / "one", tmp_path / "two", "--model", "dcp", "--out", out)
    assert r.returncode == 2 and "would both be written" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or not list(out.rglob("*.png"))


def test_evaluate_csv_never_overwrites_an_input_or_a_non_csv(sots_folder, tmp_path):
    gt = sots_folder / "gt" / "7.png"
    before = gt.read_bytes()
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--csv", gt)
    assert r.returncode == 2 and "refusing to overwrite an input image" in r.stderr and "Traceback" not in r.stderr
    assert gt.read_bytes() == before
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--csv", other)
    assert r.returncode == 2 and "not a .csv" in r.stderr and other.read_text() == "mine"
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--csv", sots_folder / "hazy" / "new.csv")
    assert r.returncode == 2 and "inside the dataset folder" in r.stderr
    assert not (sots_folder / "hazy" / "new.csv").exists()


def test_evaluate_csv_folder_is_refused_before_any_work(sots_folder, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--csv", folder)
    assert r.returncode == 2 and "names a folder" in r.stderr and "Traceback" not in r.stderr
    assert "evaluate (dcp)" not in r.stderr  # no progress bar: refused before the first image


def test_evaluate_writes_nothing_into_the_working_directory_unless_asked(sots_folder, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert list(cwd.iterdir()) == [] and json.loads(r.stdout)["per_image_csv"] is None
    before = sorted(p.relative_to(sots_folder) for p in sots_folder.rglob("*"))
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, cwd=sots_folder / "hazy")
    assert r.returncode == 0 and sorted(p.relative_to(sots_folder) for p in sots_folder.rglob("*")) == before


@pytest.mark.parametrize("limit", ["-1", "-2"])
def test_evaluate_refuses_negative_limits(sots_folder, limit):
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--limit", limit)
    assert r.returncode != 0 and "--limit must be >= 0" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_json_is_strict_when_an_image_equals_its_gt(tmp_path):
    root = tmp_path / "nh"
    J, _ = _scene(4)
    _save(root / "01_GT.png", J)
    _save(root / "01_hazy.png", J)  # the "hazy" image is its GT: PSNR of the input is infinite
    r = run_cli("evaluate", "--model", "dcp", "--data", root, "--json")
    assert r.returncode == 0, r.stderr
    assert "Infinity" not in r.stdout
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert out["psnr_hazy"] is None and out["n"] == 1


@pytest.mark.parametrize("name,kw", [("aecrnet", {"ngf": 4}), ("iicl", {"backbone_kwargs": {"ngf": 4}}), ("cut", {"ngf": 4, "n_blocks": 1})])
def test_evaluate_takes_any_scorable_size_and_refuses_smaller(tmp_path, name, kw):
    import torch

    from dehazelab import models
    from dehazelab.inference import export_weights

    torch.manual_seed(0)
    w = export_weights(models.build(name, **kw), {"model": name, "kwargs": kw}, tmp_path / "w.pt")
    root = tmp_path / "nh"
    for i, (h, wd) in enumerate([(45, 63), (7, 7)]):
        J, d = _scene(20 + i, h, wd)
        _save(root / f"{i:02d}_GT.png", J)
        _save(root / f"{i:02d}_hazy.png", haze.synthesize(J, d, beta=1.0, A=0.8)[0])
    r = run_cli("evaluate", "--model", name, "--weights", w, "--data", root, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 2
    J, d = _scene(30, 5, 9)
    _save(root / "02_GT.png", J)
    _save(root / "02_hazy.png", J)
    r = run_cli("evaluate", "--model", name, "--weights", w, "--data", root, "--json")
    assert r.returncode == 1 and "02_hazy.png" in r.stderr and "too small to score" in r.stderr
    assert json.loads(r.stdout)["n"] == 2  # the two scorable pairs are still scored
    assert "Traceback" not in r.stderr


class _Payload:
    """Unpickling this runs ``open(marker, "w")`` — what a weights-only loader must never do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle"])
def test_a_code_executing_pickle_is_refused_and_runs_nothing(tmp_path, fmt):
    import pickle

    import torch

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    obj = {"model": {"w": _Payload(marker)}, "model_spec": {"model": "aodnet", "kwargs": {}}}
    if fmt == "zip":
        torch.save(obj, evil)
    elif fmt == "legacy":
        torch.save(obj, evil, _use_new_zipfile_serialization=False)
    else:
        evil.write_bytes(pickle.dumps(obj))
    assert not marker.exists()
    J, _ = _scene(5)
    _save(tmp_path / "in.png", J)
    r = run_cli("dehaze", tmp_path / "in.png", "--model", "aodnet", "--weights", evil, "--out", tmp_path / "o")
    assert r.returncode != 0 and not marker.exists()
    assert "evil.pt" in r.stderr and "Traceback" not in r.stderr
    assert "weights_only=False" not in r.stderr and "weights_only` set to `False" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_recorded_kwargs_are_checked_against_the_weights_before_allocating(tmp_path):
    """A small file whose record says ngf 4096 (a ~4.8 GB network): refused from shapes built on the
    meta device, with the process's peak memory far below that allocation."""
    import torch

    from dehazelab import models
    from dehazelab.inference import export_weights

    w = export_weights(models.build("aecrnet", ngf=4), {"model": "aecrnet", "kwargs": {"ngf": 4}}, tmp_path / "w.pt")
    ck = torch.load(w, weights_only=True)
    ck["model_spec"]["kwargs"]["ngf"] = 4096
    torch.save(ck, tmp_path / "lying.pt")
    J, _ = _scene(6)
    _save(tmp_path / "in.png", J)
    code = ("import resource, sys\nfrom dehazelab import cli\n"
            "try:\n    rc = cli.main(['dehaze', sys.argv[1], '--model', 'aecrnet', '--weights', sys.argv[2], "
            "'--out', sys.argv[3]])\n"
            "except SystemExit as e:\n    print(e, file=sys.stderr); rc = 1\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, tmp_path / "in.png", tmp_path / "lying.pt", tmp_path / "o"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "lying.pt" in r.stderr and "Traceback" not in r.stderr
    assert "ngf" in r.stderr and "shape" in r.stderr
    assert int(r.stdout.split()[-1]) < 2_000_000  # KiB: under 2 GB, interpreter and torch included


def test_nan_weights_and_unknown_kwargs_are_named(tmp_path):
    import torch

    from dehazelab import models
    from dehazelab.inference import export_weights

    J, _ = _scene(7)
    _save(tmp_path / "in.png", J)
    w = export_weights(models.build("aodnet"), {"model": "aodnet", "kwargs": {}}, tmp_path / "w.pt")
    ck = torch.load(w, weights_only=True)
    bad = dict(ck, model={**ck["model"]})
    k = next(iter(bad["model"]))
    bad["model"][k] = torch.full_like(bad["model"][k], float("nan"))
    torch.save(bad, tmp_path / "nan.pt")
    r = run_cli("dehaze", tmp_path / "in.png", "--model", "aodnet", "--weights", tmp_path / "nan.pt", "--out", tmp_path / "o")
    assert r.returncode != 0 and "nan.pt" in r.stderr and "NaN" in r.stderr and "Traceback" not in r.stderr
    ck["model_spec"]["kwargs"] = {"wings": 2}
    torch.save(ck, tmp_path / "kw.pt")
    r = run_cli("dehaze", tmp_path / "in.png", "--model", "aodnet", "--weights", tmp_path / "kw.pt", "--out", tmp_path / "o")
    assert r.returncode != 0 and "kw.pt" in r.stderr and "wings" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("dehaze", tmp_path / "in.png", "--model", "aecrnet", "--weights", w, "--out", tmp_path / "o")
    assert r.returncode != 0 and "is for model 'aodnet', not 'aecrnet'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_dehaze_goes_past_unreadable_files_and_lists_them(tmp_path):
    J, _ = _scene(8)
    src = tmp_path / "in"
    for name in ("a.png", "c.png", "e.png"):
        _save(src / name, J)
    (src / "b.png").write_text("not an image")
    (src / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    r = run_cli("dehaze", src, "--model", "dcp", "--out", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_dcp.png", "c_dcp.png", "e_dcp.png"]
    assert "wrote 3 image(s)" in r.stderr and "2 of 5 input(s) could not be dehazed" in r.stderr
    assert "b.png" in r.stderr and "d.png" in r.stderr
    r = run_cli("dehaze", src, "--model", "dcp", "--out", tmp_path / "stop", "--stop-on-error")
    assert r.returncode == 2 and "b.png" in r.stderr
    assert sorted(p.name for p in (tmp_path / "stop").iterdir()) == ["a_dcp.png"]


def test_dehaze_says_which_folders_it_skips(tmp_path):
    J, _ = _scene(9)
    real = tmp_path / "elsewhere"
    _save(real / "x.png", J)
    src = tmp_path / "in"
    _save(src / "a.png", J)
    (src / "linked").symlink_to(real, target_is_directory=True)
    r = run_cli("dehaze", src, "--model", "dcp", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "linked: symlinked folder skipped" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_dcp.png"]


@pytest.mark.parametrize("out_arg,msg", [("", "empty output folder"), ("file", "existing file"),
                                         ("x/y.png", "looks like an image file name")])
def test_dehaze_refuses_a_bad_out_before_any_work(tmp_path, out_arg, msg):
    J, _ = _scene(10)
    _save(tmp_path / "in.png", J)
    (tmp_path / "file").write_text("mine")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run_cli("dehaze", tmp_path / "in.png", "--model", "dcp", "--out",
                out_arg if out_arg in ("", "x/y.png") else tmp_path / out_arg, cwd=cwd)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert list(cwd.iterdir()) == [] and (tmp_path / "file").read_text() == "mine"


def test_dehaze_refuses_a_file_system_root_and_broken_symlinks(tmp_path):
    r = run_cli("dehaze", "/", "--model", "dcp", "--out", tmp_path / "o")
    assert r.returncode == 2 and "whole file system" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    r = run_cli("dehaze", tmp_path / "dangling.png", "--model", "dcp", "--out", tmp_path / "o")
    assert r.returncode == 2 and "dangling.png" in r.stderr and "does not exist" in r.stderr


def test_dehaze_caps_the_pixels_it_reads(tmp_path):
    """A tiny PNG file that decodes to a big image is refused from its header, unless allowed."""
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000)).save(big)  # 6 MP of zeros: a few KB on disk
    r = run_cli("dehaze", big, "--model", "dcp", "--out", tmp_path / "o", "--max-pixels", "1000000")
    assert r.returncode == 1 and "6.0 megapixels" in r.stderr and "--max-pixels 0" in r.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    r = run_cli("dehaze", big, "--model", "aodnet", "--out", tmp_path / "o", "--max-pixels", "-1")
    assert r.returncode != 0 and "--max-pixels must be >= 0" in r.stderr


def test_dehaze_cleans_its_own_stale_temporary_files_only(tmp_path):
    J, _ = _scene(11)
    _save(tmp_path / "in" / "a.png", J)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a_dcp.png.k2j3h4g5.tmp"     # what a killed write of a_dcp.png leaves (atomic_open)
    stale.write_bytes(b"partial")
    other = out / ".notes.tmp"
    other.write_text("not ours")
    r = run_cli("dehaze", tmp_path / "in", "--model", "dcp", "--out", out)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and other.read_text() == "not ours" and (out / "a_dcp.png").exists()


def test_device_option(tmp_path, sots_folder):
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--device", "tpu")
    assert r.returncode != 0 and "tpu" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_keeps_what_it_computed_past_a_bad_pair(sots_folder, tmp_path):
    (sots_folder / "hazy" / "7_2.png").write_text("not an image")
    csv = tmp_path / "per_image.csv"
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--json", "--csv", csv)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 3 and out["n_failed"] == 1 and "7_2.png" in out["failed"][0]
    assert "1 of 4 pair(s) could not be scored" in r.stderr
    assert len(csv.read_text().strip().splitlines()) == 1 + 3 and not (tmp_path / "per_image.csv.partial").exists()
    good = [(sots_folder / "hazy" / f"{s}_{l}.png", sots_folder / "gt" / f"{s}.png") for s, l in ((7, 1), (8, 1), (8, 2))]
    assert out["psnr"] == pytest.approx(_independent_means(good)[0], abs=1e-6)
    r = run_cli("evaluate", "--model", "dcp", "--data", sots_folder, "--stop-on-error")
    assert r.returncode == 2 and "7_2.png" in r.stderr and "Traceback" not in r.stderr


def test_dehaze_write_failure_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """A full disk (or read-only folder) while writing: stop, name the file, say how many were written."""
    import errno

    from dehazelab import cli
    from dehazelab.data import images

    J, _ = _scene(12)
    for n in ("a", "b"):
        _save(tmp_path / "in" / f"{n}.png", J)
    calls = []

    def full_disk(path, arr):
        calls.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images, "write_image", full_disk)
    rc = cli.main(["dehaze", str(tmp_path / "in"), "--model", "dcp", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(calls) == 1
    assert "a_dcp.png: cannot write the output (No space left on device); 0 image(s) were written" in err
