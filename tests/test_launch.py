"""``python -m dehazelab train RUN.yaml``: run-spec validation, overrides, a real paired run with resume,
an unpaired FastCUT run (dehazelab.launch). Data: a temporary SOTS-indoor folder; no weights needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from dehazelab import cli, launch, paths
from dehazelab.launch import LaunchError, load_spec, parse_spec, prepare
from dehazelab.models import MODELS
from dehazelab.train.checkpoint import model_from_checkpoint

SMOKE = paths.ROOT / "config" / "runs" / "smoke_paired.yaml"
RUNS = paths.ROOT / "config" / "runs"
TINY_FASTCUT = {"ngf": 8, "n_blocks": 2, "ndf": 8, "nce_layers": [0, 4, 8, 12, 13], "num_patches": 16, "netF_nc": 16}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root holding sots-indoor/ with the project's scene ids 1400-1439 (one haze level, 32x40)."""
    root = tmp_path_factory.mktemp("data")
    for scene in range(1400, 1440):
        rng = np.random.default_rng(scene)
        clear = np.kron(rng.uniform(0.0, 1.0, (4, 5, 3)), np.ones((8, 8, 1)))
        hazy = 0.6 * clear + 0.35
        for sub, name, img in (("gt", f"{scene}.png", clear), ("hazy", f"{scene}_1.png", hazy)):
            (root / "sots-indoor" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(root / "sots-indoor" / sub / name)
    return root


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def smoke_raw() -> dict:
    return yaml.safe_load(SMOKE.read_text())


def test_torchrun_environment_is_parsed_once_and_checked(monkeypatch, tmp_path, capsys):
    assert (launch.rank(), launch.world_size()) == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (launch.rank(), launch.world_size()) == (3, 4)
    monkeypatch.setenv("RANK", "three")  # used to run silently as rank 0
    with pytest.raises(LaunchError, match=r"RANK='three' is not an integer"):
        launch.rank()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(LaunchError, match=r"rank 4 outside \[0, 4\)"):
        launch.world_size()


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("edit, key", [
    (lambda s: s.update(modle="aecrnet"), "modle"),
    (lambda s: s["train"].update(stpes=3), "train.stpes"),
    (lambda s: s["data"].update(train={"name": "sots-train", "scene": [1400]}), "data.train.scene"),
    (lambda s: s.update(method="cut"), "method"),
])
def test_unknown_key_names_file_and_key(tmp_path, edit, key):
    raw = smoke_raw()
    edit(raw)
    path = write_spec(tmp_path / "bad.yaml", raw)
    with pytest.raises(LaunchError) as e:
        load_spec(path)
    msg = str(e.value)
    assert str(path) in msg and f": {key}: unknown key" in msg and "valid keys here" in msg
    if key == "train.stpes":
        assert "did you mean 'steps'" in msg
    if key == "method":
        assert "kind: unpaired" in msg


def test_bad_kind_and_missing_keys(tmp_path, capsys):
    raw = smoke_raw()
    raw["kind"] = "semi"
    with pytest.raises(LaunchError, match=r"bad\.yaml: kind: must be one of paired, unpaired, got 'semi'"):
        load_spec(write_spec(tmp_path / "bad.yaml", raw))
    assert cli.main(["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "error: " in capsys.readouterr().err and not (tmp_path / "o").exists()
    raw = smoke_raw()
    del raw["train"]["crop"]
    with pytest.raises(LaunchError, match=r"train\.crop: missing \(required\)"):
        load_spec(write_spec(tmp_path / "bad.yaml", raw))
    raw = smoke_raw()
    raw["train"]["lr"] = -1
    with pytest.raises(LaunchError, match=r"train\.lr: .*positive"):
        load_spec(write_spec(tmp_path / "bad.yaml", raw))
    raw = smoke_raw()
    raw["model"] = "aecr"
    with pytest.raises(LaunchError, match=r"model: unknown model 'aecr'; known: .*aecrnet"):
        load_spec(write_spec(tmp_path / "bad.yaml", raw))
    raw = smoke_raw()
    raw["data"]["train"] = "sots-trian"
    with pytest.raises(LaunchError, match=r"data\.train\.name: unknown data set 'sots-trian'; did you mean 'sots-train'"):
        load_spec(write_spec(tmp_path / "bad.yaml", raw))
    (tmp_path / "dup.yaml").write_text("kind: paired\nkind: unpaired\n")
    with pytest.raises(LaunchError, match=r"dup\.yaml: not valid YAML: .*duplicate key 'kind'"):
        load_spec(tmp_path / "dup.yaml")
    with pytest.raises(LaunchError, match="no such run spec file"):
        load_spec(tmp_path / "missing.yaml")


def test_missing_data_says_which_setting(tmp_path, monkeypatch, data_root):
    spec = load_spec(SMOKE)
    monkeypatch.setenv(paths.DATA_ENV, "")  # no data configured
    with pytest.raises(LaunchError) as e:
        prepare(spec)
    msg = str(e.value)
    assert "smoke_paired.yaml: data.train:" in msg and "sots-indoor/" in msg
    assert f"${paths.DATA_ENV}" in msg and "data.root" in msg

    with pytest.raises(LaunchError, match=r"\(--set data\.root\): data\.root: .*nowhere is not a folder"):
        prepare(load_spec(SMOKE, [f"data.root={tmp_path / 'nowhere'}"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LaunchError) as e:
        prepare(load_spec(SMOKE, [f"data.root={tmp_path / 'empty'}"]))
    assert "sots-indoor is not a folder" in str(e.value) and "set data.root" in str(e.value)
    with pytest.raises(LaunchError, match=r"data\.train\.scenes: no images of scene\(s\) 1440, 1441"):
        prepare(load_spec(SMOKE, [f"data.root={data_root}", "data.train.scenes=[1438-1441]"]))
    with pytest.raises(LaunchError, match=r"train\.crop: 64 is larger than .*1400_1\.png \(32x40\)"):
        prepare(load_spec(SMOKE, [f"data.root={data_root}", "train.crop=64"]))
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(LaunchError, match=r"train\.batch_size: 2 is the global batch and must be divisible by the 3 ranks"):
        prepare(load_spec(SMOKE, [f"data.root={data_root}"]))


def test_set_overrides(tmp_path, data_root):
    spec = load_spec(SMOKE, ["train.steps=10", "train.lr=5e-4", "model_kwargs.ngf=8", "data.test=null",
                             "data.train.max_images=6", "loss=cr", "loss_kwargs={beta: 0.2, vgg_weights: random}"])
    assert spec.train.steps == 10 and spec.train.lr == 5e-4 and spec.model_kwargs == {"ngf": 8}
    assert spec.data.test is None and spec.data.train.name == "sots-train" and spec.data.train.max_images == 6
    assert spec.loss == "cr" and spec.loss_kwargs["beta"] == 0.2 and spec.loss_kwargs["n_neg"] == 1
    assert spec.to_dict()["train"]["steps"] == 10 and spec.overrides[0] == "train.steps=10"
    # the YAML file reads 1.0e-3 and 2e-4 alike as floats
    raw = smoke_raw()
    raw["train"]["lr"] = "2e-4"
    text = yaml.safe_dump(raw).replace("'2e-4'", "2e-4")
    (tmp_path / "f.yaml").write_text(text)
    assert load_spec(tmp_path / "f.yaml").train.lr == 2e-4

    with pytest.raises(LaunchError, match=r"--set 'train\.steps': expected KEY=VALUE"):
        load_spec(SMOKE, ["train.steps"])
    with pytest.raises(LaunchError, match=r"smoke_paired\.yaml \(--set train\.stpes\): train\.stpes: unknown key"):
        load_spec(SMOKE, ["train.stpes=3"])
    with pytest.raises(LaunchError, match=r"\(--set train\.steps\): train\.steps: .*must be an int"):
        load_spec(SMOKE, ["train.steps=many"])
    with pytest.raises(LaunchError, match=r"\(--set kind\): kind: must be one of"):
        load_spec(SMOKE, ["kind=semi"])

    prep = prepare(load_spec(SMOKE, [f"data.root={data_root}", "data.train.max_images=6", "loss=cr",
                                     "loss_kwargs.vgg_weights=random"]))
    assert len(prep.train_set) == 6 and len(prep.test_set) == 2
    assert prep.resolved["vgg"] == "random(seed=0)" and prep.loss_fn.cr.vgg_label == "random(seed=0)"
    with pytest.raises(LaunchError, match=r"loss_kwargs: .*n_neg=2 .*1 image\(s\) per rank"):
        prepare(load_spec(SMOKE, [f"data.root={data_root}", "train.batch_size=1", "loss=cr",
                                  "loss_kwargs={n_neg: 2, vgg_weights: random}"]))


def test_default_out_dir_is_anchored_on_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert launch.default_out_dir("config/runs/smoke_paired.yaml") == paths.ROOT / "results" / "train" / "smoke_paired"
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "res"))
    assert launch.default_out_dir(SMOKE) == (tmp_path / "res").resolve() / "train" / "smoke_paired"


def test_example_specs_hold_the_paper_recipes():
    a = load_spec(RUNS / "aecrnet_full.yaml")
    assert (a.kind, a.model, a.model_kwargs, a.loss) == ("paired", "aecrnet", {"ngf": 64}, "cr")
    t = a.train
    assert (t.steps, t.batch_size, t.crop, t.lr, t.cosine, t.betas) == (500_000, 16, 240, 2e-4, True, (0.9, 0.999))
    assert (a.loss_kwargs["beta"], a.loss_kwargs["n_pos"], a.loss_kwargs["n_neg"]) == (0.1, 1, 5)
    c = load_spec(RUNS / "cut_full.yaml")
    assert (c.kind, c.method, c.lr_every_epoch) == ("unpaired", "cut", True)
    assert {k: c.method_kwargs[k] for k in ("ngf", "ndf", "n_blocks", "num_patches")} == \
        {"ngf": 64, "ndf": 64, "n_blocks": 9, "num_patches": 256}
    assert (c.train.steps, c.train.crop, c.train.batch_size, c.train.decay_data) == (30_000, 256, 1, "resize")
    for f in ("aecrnet_full.yaml", "cut_full.yaml"):
        assert "torchrun" in (RUNS / f).read_text().split("kind:")[0]


# ------------------------------------------------------------------------------------------ runs
def test_paired_run_checkpoints_and_resumes(tmp_path, data_root):
    out = tmp_path / "run"
    # 1. as a user runs it: 3 steps of the 5-step schedule, in a subprocess
    r = subprocess.run([sys.executable, "-m", "dehazelab", "train", str(SMOKE), "--set", f"data.root={data_root}",
                        "--stop-at", "3", "--out", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr
    assert "step 3/5" in r.stderr
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["model_spec"] == {"model": "aecrnet", "kwargs": {"ngf": 4}}
    model = model_from_checkpoint(ckpt, MODELS)
    assert sum(p.numel() for p in model.parameters()) == 15_179
    rec = json.loads((out / "run_spec.json").read_text())
    assert rec["spec"]["model"] == "aecrnet" and rec["spec"]["train"]["steps"] == 5
    assert rec["spec"]["data"]["root"] == str(data_root) and rec["overrides"] == [f"data.root={data_root}"]
    assert rec["resolved"]["train_data"]["n_pairs"] == 30 and rec["resolved"]["test_data"]["n_pairs"] == 2
    assert rec["resolved"]["vgg"] is None and rec["resolved"]["world_size"] == 1

    # 2. the second call continues from step 3 to the end
    assert cli.main(["train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["resolved"]["resumed_from_step"] == 3
    ckpt5 = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt5["step"] == 5 and (out / "summary.json").exists() and (out / "per_image.csv").exists()
    hist = (out / "history.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in hist[1:]] == [1, 2, 3, 4, 5]

    # resumed == uninterrupted
    straight = tmp_path / "straight"
    assert cli.main(["train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(straight)]) == 0
    ref = torch.load(straight / "last.pt", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(ref[k], ckpt5["model"][k]) for k in ref)

    # 3. a spec that changes the weights cannot resume the folder; --no-resume starts over
    with pytest.raises(LaunchError, match=r"cannot resume the run in .*train\.steps: 5 -> 8.*--no-resume"):
        launch.run(SMOKE, out, [f"data.root={data_root}", "train.steps=8"])
    res = launch.run(SMOKE, out, [f"data.root={data_root}", "train.steps=1", "train.log_every=5"], resume=False)
    assert len(res.history) == 1 and torch.load(out / "last.pt", weights_only=True)["step"] == 1
    # bookkeeping fields may change on resume (log_every is one)
    launch.run(SMOKE, out, [f"data.root={data_root}", "train.steps=1"])


def test_unpaired_fastcut_run(tmp_path, data_root):
    spec = write_spec(tmp_path / "fastcut_tiny.yaml", {
        "kind": "unpaired", "method": "fastcut", "method_kwargs": TINY_FASTCUT,
        "train": {"n_steps": 1, "n_steps_decay": 1, "crop": 32, "decay_data": "keep", "log_every": 1,
                  "threads": 1, "device": "cpu"},
        "data": {"root": str(data_root), "train": "sots-train", "test": {"name": "sots-test", "max_images": 1}},
    })
    out = tmp_path / "fc"
    assert cli.main(["train", str(spec), "--out", str(out)]) == 0
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["model_spec"]["model"] == "fastcut"
    assert type(model_from_checkpoint(ckpt, MODELS)).__name__ == "ImageTranslator"
    rec = json.loads((out / "run_spec.json").read_text())
    td = rec["resolved"]["train_data"]
    assert (td["n_hazy"], td["n_clear"], td["hazy_scenes"], td["clear_scenes"]) == \
        (15, 15, ["1400", "1414"], ["1415", "1429"])
    assert rec["spec"]["method_kwargs"]["seed"] == 0 and rec["resolved"]["method_hparams"]["lambda_NCE"] == 10.0

    # lr_every: epoch = len(train_set) // batch_size (15 hazy images here), checked against the schedule
    base = ["train.lr_every=epoch", "data.test=null"]
    prep = prepare(load_spec(spec, base + ["train.n_steps=30", "train.n_steps_decay=15"]))
    assert prep.cfg.lr_every == 15 and prep.spec.to_dict()["train"]["lr_every"] == "epoch"
    with pytest.raises(LaunchError, match=r"train\.lr_every: 'epoch' = 15 steps .*must divide n_steps=20"):
        prepare(load_spec(spec, base + ["train.n_steps=20", "train.n_steps_decay=15"]))
    # explicit hazy / clear sets
    prep = prepare(load_spec(spec, ["data.test=null", "data.train={hazy: {name: sots-train, scenes: [1400-1409]}, "
                                                      "clear: {name: sots-test}}"]))
    assert len(prep.train_set.hazy_items) == 10 and len(prep.train_set.clear_items) == 10
    with pytest.raises(LaunchError, match=r"data\.train\.clear: missing"):
        parse_spec(yaml.safe_load(spec.read_text()) | {}, str(spec), ["data.train={hazy: sots-train}"])


def test_a_fresh_start_never_deletes_another_runs_files(tmp_path, data_root, capsys):
    """No last.pt, but best.pt / history.csv of something else: refused, nothing deleted or written."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "best.pt").write_bytes(b"my own best model")
    (out / "history.csv").write_text("step,loss\n1,0.5\n")
    args = ["train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "best.pt, history.csv" in err and "--no-resume" in err
    assert (out / "best.pt").read_bytes() == b"my own best model"
    assert (out / "history.csv").read_text() == "step,loss\n1,0.5\n"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.csv"]  # no run_spec.json, no config.json
    # --no-resume is the explicit flag: then the folder is the new run's
    assert cli.main([*args, "--no-resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 5


def test_the_same_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, data_root):
    out = tmp_path / "run"
    launch.run(SMOKE, out, [f"data.root={data_root}"], stop_at=2)
    (out / "last.pt").unlink()  # as if killed before any checkpoint: its own history and config remain
    (out / "best.pt").unlink(missing_ok=True)
    res = launch.run(SMOKE, out, [f"data.root={data_root}"])
    assert list(res.history["step"]) == [1, 2, 3, 4, 5]
    assert json.loads((out / "config.json").read_text())["resolved"]["resumed_from_step"] is None


@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_a_failed_no_resume_leaves_the_run_resumable(tmp_path, data_root, capsys, device):
    """The device is checked before anything is read or written; run_spec.json is written only when
    training starts, so the original command still resumes the step-2 checkpoint."""
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    out = tmp_path / "run"
    base = ["train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(out)]
    assert cli.main([*base, "--stop-at", "2"]) == 0
    spec_before = (out / "run_spec.json").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--no-resume", "--set", f"train.device={device}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.device" in err and device in err and "Traceback" not in err
    assert (out / "run_spec.json").read_bytes() == spec_before
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    assert cli.main(base) == 0
    assert json.loads((out / "config.json").read_text())["resolved"]["resumed_from_step"] == 2


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_between_steps_with_last_pt_and_resumes_exactly(tmp_path, data_root, sig):
    """Ctrl-C / kill: the step finishes, last.pt is saved, one line is printed, the exit code is the
    shell's 128 + signal; the same command then resumes to the weights of an uninterrupted run."""
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "dehazelab", "train", str(SMOKE), "--set", f"data.root={data_root}",
            "--set", "train.steps=400", "--out", str(out)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    hist = out / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not hist.exists() or len(hist.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.strip()][-1]
    assert line.startswith(f"interrupted: {sig} at step ") and "last.pt" in line and "again to resume" in line
    stopped = int(line.split(" at step ")[1].split(":")[0])
    assert 3 <= stopped < 400
    assert torch.load(out / "last.pt", weights_only=True)["step"] == stopped
    assert cli.main(["train", str(SMOKE), "--set", f"data.root={data_root}", "--set", "train.steps=400",
                     "--out", str(out)]) == 0
    straight = tmp_path / "straight"
    assert cli.main(["train", str(SMOKE), "--set", f"data.root={data_root}", "--set", "train.steps=400",
                     "--out", str(straight)]) == 0
    a = torch.load(out / "last.pt", weights_only=True)
    b = torch.load(straight / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 400
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    steps = [int(r.split(",")[0]) for r in (out / "history.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 401))


@pytest.mark.parametrize("content", [b"\x00garbage", b"PK\x03\x04truncated zip"])
def test_a_corrupt_last_pt_on_resume_is_one_error_line(tmp_path, data_root, content):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "dehazelab", "train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(out)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    assert subprocess.run([*args, "--stop-at", "2"], capture_output=True, env=env, timeout=300).returncode == 0
    (out / "last.pt").write_bytes(content)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "last.pt" in lines[0] and "--no-resume" in lines[0]
    assert (out / "last.pt").read_bytes() == content  # nothing replaced


def test_out_that_is_a_file_is_one_error_line(tmp_path, data_root, capsys):
    f = tmp_path / "afile"
    f.write_text("mine")
    assert cli.main(["train", str(SMOKE), "--set", f"data.root={data_root}", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "afile" in err[0]
    assert f.read_text() == "mine"


def _kill_after_rows(args: list[str], hist: Path, rows: int, env: dict) -> None:
    import signal
    import time

    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and (
            not hist.exists() or len(hist.read_text().splitlines()) < rows + 1):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.parametrize("kind", ["paired", "unpaired"])
def test_sigkill_at_any_moment_resumes_to_the_uninterrupted_run(tmp_path, data_root, kind):
    """SIGKILL (no chance to save) at three moments: a loadable last.pt is always left (atomic
    writes), and rerunning the command ends bitwise where an uninterrupted run ends, history included."""
    if kind == "paired":
        spec, extra = SMOKE, ["--set", "train.steps=120", "--set", "train.ckpt_every=9"]
    else:
        spec = write_spec(tmp_path / "fc.yaml", {
            "kind": "unpaired", "method": "fastcut", "method_kwargs": TINY_FASTCUT,
            "train": {"n_steps": 20, "n_steps_decay": 10, "crop": 32, "decay_data": "keep", "log_every": 1,
                      "ckpt_every": 4, "threads": 1, "device": "cpu"},
            "data": {"root": str(data_root), "train": "sots-train", "test": None}})
        extra = []
    base = [sys.executable, "-m", "dehazelab", "train", str(spec), "--set", f"data.root={data_root}", *extra]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = tmp_path / "killed"
    for rows in (3, 11, 17):
        _kill_after_rows([*base, "--out", str(out)], out / "history.csv", rows, env)
        if (out / "last.pt").exists():
            torch.load(out / "last.pt", map_location="cpu", weights_only=True)  # loadable
    assert subprocess.run([*base, "--out", str(out)], capture_output=True, env=env, timeout=300).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run([*base, "--out", str(straight)], capture_output=True, env=env, timeout=300).returncode == 0
    a = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(straight / "last.pt", map_location="cpu", weights_only=True)
    assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    ha, hb = (pd.read_csv(d / "history.csv") for d in (out, straight))
    cols = [c for c in hb.columns if c.startswith("loss")]
    assert list(ha["step"]) == list(hb["step"]) and cols
    pd.testing.assert_frame_equal(ha[cols], hb[cols], check_exact=True)
