"""Runs as results (dehazelab.runs): ids, ensure (train once, then read), staged runs, resume rules,
the notebooks' grids, and which library files a run's job depends on. On the synthetic data set, so
no benchmark data is needed; seconds each."""

import json
import math

import pandas as pd
import pytest
import torch

from dehazelab import launch
from dehazelab.data.selection import filter_pairs, scene_halves, spread
from dehazelab.runs import Run, RunNotFinished, ensure, ensure_grid, identity, run_id
from dehazelab.runs.code import code_files
from dehazelab.runs.grids import GRIDS, grid, notebook_defaults, notebook_params

PAIRED = {
    "kind": "paired", "model": "aodnet", "loss": "l1",
    "train": {"steps": 4, "batch_size": 2, "crop": 16, "lr": 1e-3, "seed": 0, "threads": 1, "log_every": 1},
    "data": {"train": "synthetic-train", "test": {"name": "synthetic-test", "max_images": 3}},
}


def _spec(**changes):
    spec = json.loads(json.dumps(PAIRED))
    for key, value in changes.items():
        node = spec
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return spec


def _id(spec):
    return run_id(launch.parse_spec(spec).to_dict())


# ------------------------------------------------------------------------------------------ ids
def test_run_id_changes_with_what_is_computed_only():
    base = _id(PAIRED)
    assert base.startswith("aodnet-s0-") and len(base.rsplit("-", 1)[1]) == 10
    assert _id(PAIRED) == base  # stable
    # execution and bookkeeping do not change the numbers, so not the id
    for k, v in {"train.threads": 2, "description": "x", "train.log_every": 2, "train.device": "cpu"}.items():
        assert _id(_spec(**{k: v})) == base, k
    # everything that changes the weights or the test does
    for k, v in {"train.steps": 5, "train.seed": 1, "train.lr": 2e-3, "model": "aecrnet",
                 "data.test.max_images": 2}.items():
        assert _id(_spec(**{k: v})) != base, k
    # defaults filled in: writing a default explicitly is the same run
    assert _id(_spec(**{"train.augment": True})) == base


def test_identity_drops_only_execution_fields():
    d = launch.parse_spec(PAIRED).to_dict()
    ident = identity(d)
    assert "threads" not in ident["train"] and "log_every" not in ident["train"]
    assert ident["train"]["steps"] == 4 and ident["model"] == "aodnet" and "root" not in ident["data"]


# ------------------------------------------------------------------------------------------ ensure
def test_ensure_trains_once_then_reads(tmp_path, monkeypatch):
    r = ensure(PAIRED, tmp_path, keep_weights=True, label="AOD", progress=False)
    assert isinstance(r, Run) and r.dir == tmp_path / _id(PAIRED) and r.label == "AOD"
    s = r.summary
    assert s["steps"] == 4 and s["n_test"] == 3 and s["params"] == 1761 and s["threads"] == 1
    # the summary's means are the per-image rows' means (an independent average of the file)
    per = r.per_image
    assert list(per.columns[:3]) == ["name", "psnr", "ssim"] and len(per) == 3
    assert math.isclose(per.psnr.mean(), s["psnr"], rel_tol=1e-12)
    assert math.isclose(per.ssim.mean(), s["ssim"], rel_tol=1e-12)
    assert list(r.history.step) == [1, 2, 3, 4]
    # the kept weights rebuild the network, which reproduces the per-image scores
    from dehazelab.train.paired import evaluate

    net = r.model()
    rows = []
    evaluate(net, launch.prepare(launch.parse_spec(PAIRED)).test_set, per_image=rows)
    assert [round(x["psnr"], 9) for x in rows] == [round(x, 9) for x in per.psnr]

    # a second call reads: the trainer is not called again
    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(launch, "run", boom)
    again = ensure(PAIRED, tmp_path, keep_weights=True)
    assert again.summary == s


def test_ensure_is_the_train_command(tmp_path):
    """A run trained by `python -m dehazelab train` into the run's folder is the same run ensure reads."""
    from dehazelab import cli

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(PAIRED))
    out = tmp_path / "runs" / _id(PAIRED)
    assert cli.main(["train", str(spec_file), "--out", str(out), "--keep-weights", "--label", "cli"]) == 0
    r = ensure(PAIRED, tmp_path / "runs")
    assert r.summary["label"] == "cli" and r.has_weights()
    direct = ensure(PAIRED, tmp_path / "direct", progress=False)
    assert direct.summary["psnr"] == r.summary["psnr"] and not direct.has_weights()


def test_a_run_without_summary_is_not_finished(tmp_path):
    with pytest.raises(RunNotFinished, match="no summary.json"):
        Run(tmp_path)


def test_interrupted_run_resumes_and_a_stale_finished_one_restarts(tmp_path):
    spec = launch.parse_spec(PAIRED)
    out = tmp_path / _id(PAIRED)
    launch.run(spec, out_dir=out, stop_at=2, progress=False)
    assert not (out / "summary.json").exists()  # not finished: no summary
    r = ensure(PAIRED, tmp_path, progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["resolved"]["resumed_from_step"] == 2 and r.summary["steps"] == 4
    straight = ensure(PAIRED, tmp_path / "straight", progress=False)
    assert straight.summary["psnr"] == r.summary["psnr"]  # resumed == uninterrupted

    # a finished last.pt without summary (the pipeline removed it after a code change): trained again
    (out / "summary.json").unlink()
    ensure(PAIRED, tmp_path, progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["resolved"]["resumed_from_step"] is None


def test_staged_run_trains_the_prm_first_and_scores_j0(tmp_path):
    spec = {"kind": "paired", "model": "iicl-aodnet", "model_kwargs": {"use_prm": True, "prm_width": 4},
            "loss": "iicl", "loss_kwargs": {"beta_inter": 0.0, "beta_intra": 0.0}, "warmup_steps": 2,
            "train": {"steps": 2, "batch_size": 2, "crop": 16, "seed": 0, "threads": 1, "log_every": 1},
            "data": {"train": "synthetic-train", "test": {"name": "synthetic-test", "max_images": 2}}}
    r = ensure(spec, tmp_path, progress=False)
    assert list(r.warmup_history.step) == [1, 2] and list(r.history.step) == [1, 2]
    assert "loss_prm_l1" in r.warmup_history and r.summary["psnr_j0"] is not None
    assert r.summary["warmup_steps"] == 2


def test_warmup_needs_a_staged_model():
    with pytest.raises(launch.LaunchError, match="warmup_steps"):
        launch.parse_spec(_spec(warmup_steps=2))


def test_cr_extra_samples_resume_exactly(tmp_path):
    """CR's private sampler is checkpointed: a run stopped and resumed equals one run straight."""
    spec = _spec(model="aecrnet", loss="cr", **{"model_kwargs": {"ngf": 4}, "loss_kwargs":
                                                 {"n_neg": 2, "n_pos": 2, "vgg_weights": "random"}})
    rs = launch.parse_spec(spec)
    launch.run(rs, out_dir=tmp_path / "a", stop_at=2, progress=False)
    launch.run(rs, out_dir=tmp_path / "a", progress=False)
    launch.run(rs, out_dir=tmp_path / "b", progress=False)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------------------------------ grids
@pytest.mark.parametrize("nb", sorted(GRIDS))
def test_every_notebook_grid_expands_at_smoke_and_small(nb):
    import yaml

    from dehazelab import paths

    for size in ("smoke", "small"):
        over = yaml.safe_load((paths.ROOT / "config" / f"{size}.yaml").read_text())["notebooks"].get(nb) or {}
        p = notebook_params(nb, {**over, "size": size})
        runs = grid(nb, p, has_data=True)
        seeds = [int(s) for s in p["seeds"]]
        assert runs and len({r.id for r in runs}) == len(runs)
        assert len(runs) % len(seeds) == 0 and {r.seed for r in runs} == set(seeds)
        inits = {r.spec["init"]["run"] for r in runs if r.spec.get("init")}
        # kept: the first seed of every variant (figures, CLI), every run another one starts from, and
        # the L1 runs notebook 04 starts from (declared in 01 too)
        shared = {r.id for r in runs if r.spec.get("description", "").endswith("(notebooks 01 and 04)")}
        assert all(r.keep == (r.seed == seeds[0] or r.id in inits | shared) for r in runs)
        order = [r.id for r in runs]
        for r in runs:  # a run starting from another run's weights comes after it (ensure_grid trains in order)
            if r.spec.get("init"):
                assert order.index(r.spec["init"]["run"]) < order.index(r.id)
                assert r.spec["train"]["seed"] == next(b for b in runs if b.id == r.spec["init"]["run"]).seed
        for r in runs:  # every spec is valid and names its test selection
            s = launch.parse_spec(r.spec)
            assert s.data.test.max_images == int(p["max_test_images"]) and s.train.seed == r.seed
        offline = grid(nb, p, has_data=False)
        assert all(r.spec["data"]["train"].startswith("synthetic") for r in offline)
        for r in runs + offline:  # the train job gets the resolved spec back: it must parse to itself
            resolved = launch.parse_spec(r.spec).to_dict()
            assert launch.parse_spec(resolved).to_dict() == resolved, r.id


@pytest.mark.parametrize("nb", sorted(GRIDS))
def test_global_residual_reaches_every_learned_generator_and_is_absent_when_off(nb):
    p = notebook_params(nb, {"size": "smoke"})
    plain = grid(nb, {**p, "global_residual": False}, has_data=True)
    res = grid(nb, {**p, "global_residual": True, "eval_every": 3}, has_data=True)
    assert "global_residual" not in json.dumps([r.spec for r in plain])  # off: the papers' outputs, old ids
    for r in res:
        kw = r.spec.get("model_kwargs") or r.spec.get("method_kwargs")
        if r.spec.get("model") == "aodnet" or kw.get("backbone") == "aodnet":
            assert "global_residual" not in json.dumps(kw)  # AOD-Net's K-formulation has no such output
        else:
            assert (kw.get("backbone_kwargs") or kw)["global_residual"] is True, r.variant
        assert r.spec["train"]["eval_every"] == 3


@pytest.mark.parametrize("size", ["smoke", "small"])
def test_notebook_04_fine_tunes_the_l1_runs_of_notebook_01(size):
    """With the committed configs, 04's backbones are 01's L1 runs (trained once), and each 04 variant
    starts from its own seed's run of its own backbone, with the backbone's weights under ``backbone.``."""
    import yaml

    from dehazelab import paths

    cfg = yaml.safe_load((paths.ROOT / "config" / f"{size}.yaml").read_text())["notebooks"]
    g01 = grid("01_cr_aecrnet", notebook_params("01_cr_aecrnet", {**(cfg.get("01_cr_aecrnet") or {}), "size": size}),
               has_data=True)
    g04 = grid("04_iicl", notebook_params("04_iicl", {**(cfg.get("04_iicl") or {}), "size": size}), has_data=True)
    bases01 = {(r.spec["model"], r.seed): r.id for r in g01 if r.variant in ("AECR-Net (L1)", "AOD-Net")}
    bases04 = {r.id for r in g04 if r.variant.endswith("/L1 base")}
    assert bases04 == set(bases01.values())
    for r in g04:
        if not r.variant.endswith("/L1 base"):
            bb = r.spec["model_kwargs"]["backbone"]
            assert r.spec["init"] == {"run": bases01[(bb, r.seed)], "prefix": "backbone."}
            assert r.spec["train"]["steps"] == int(cfg.get("04_iicl", {}).get("finetune_steps", 2))


def test_ablation_steps_must_differ_from_the_l1_run():
    p = notebook_params("01_cr_aecrnet", {"size": "smoke"})
    with pytest.raises(ValueError, match="ablation_steps .* must be below steps"):
        grid("01_cr_aecrnet", {**p, "ablation_steps": p["steps"]}, has_data=True)
    with pytest.raises(ValueError, match="loss_weights: unknown name 'cutt'"):
        grid("02_cut_fastcut", {**notebook_params("02_cut_fastcut"), "loss_weights": {"cutt": {}}}, has_data=True)


def test_notebook_defaults_read_the_parameters_cell():
    d = notebook_defaults("01_cr_aecrnet")
    assert d["size"] == "smoke" and isinstance(d["seeds"], list) and "steps" in d and "tables" in d


def test_grid_of_a_notebook_that_trains_nothing():
    assert grid("00_data_baselines", {}) == [] and grid("90_tables_figures", {}) == []


def test_ensure_grid_reads_a_notebooks_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DEHAZELAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("DEHAZELAB_DATA", "")
    p = {**notebook_defaults("02_cut_fastcut"), "steps": 2}
    g = ensure_grid("02_cut_fastcut", p, progress=False)
    t = g.table()
    assert list(t.variant) == ["cut", "fastcut", "cyclegan"] and t.psnr.notna().all()
    assert (tmp_path / "runs" / "smoke" / t.run[0] / "summary.json").is_file()
    cut = g.first("cut").method()
    assert set(cut.nets) >= {"G", "D", "F"} and not cut.generator().training


# ------------------------------------------------------------------------------------------ code inputs
def test_code_files_follow_the_runs_model_only():
    def files(spec):
        return set(code_files(launch.parse_spec(spec).to_dict()))

    aod = files(PAIRED)
    ae = files(_spec(model="aecrnet"))
    cr = files(_spec(model="aecrnet", loss="cr"))
    common = {"dehazelab/train/paired.py", "dehazelab/launch.py", "dehazelab/runs/execute.py",
              "dehazelab/data/datasets.py", "dehazelab/metrics.py"}
    assert common <= aod and common <= ae
    assert "dehazelab/models/aodnet.py" in aod and "dehazelab/models/aecrnet.py" not in aod
    assert "dehazelab/models/aecrnet.py" in ae and "dehazelab/models/dfe.py" in ae and "dehazelab/models/aodnet.py" not in ae
    assert "dehazelab/losses/cr.py" in cr and "dehazelab/models/vgg.py" in cr and "dehazelab/models/vgg.py" not in ae
    cut = files({"kind": "unpaired", "method": "cut", "train": {"n_steps": 1, "n_steps_decay": 1, "crop": 16},
                 "data": {"train": "synthetic-train"}})
    assert {"dehazelab/methods/cut.py", "dehazelab/losses/patchnce.py", "dehazelab/train/unpaired.py"} <= cut
    assert "dehazelab/methods/cddgan.py" not in cut and "dehazelab/models/aecrnet.py" not in cut


# ------------------------------------------------------------------------------------------ selection
class P:
    def __init__(self, scene, level):
        self.scene, self.level = scene, level


def test_spread_keeps_first_and_last_and_every_scene():
    pairs = [P(s, lv) for s in range(1430, 1440) for lv in (1, 3, 5, 7, 9)]
    sub = spread(pairs, 20)
    assert len(sub) == 20 and sub[0] is pairs[0] and sub[-1] is pairs[-1]
    assert {p.scene for p in sub} == set(range(1430, 1440))  # a stride [::2][:20] stops at 1437
    assert spread(pairs, 0) == pairs and spread(pairs, 99) == pairs
    with pytest.raises(ValueError):
        spread(pairs, -1)


def test_filter_and_scene_halves():
    pairs = [P(str(s), lv) for s in range(1400, 1406) for lv in (1, 2)]
    assert [p.level for p in filter_pairs(pairs, levels=[2])] == [2] * 6
    assert {p.scene for p in filter_pairs(pairs, scenes=[1400, "1401"])} == {"1400", "1401"}
    hazy, clear, hs, cs = scene_halves(pairs)
    assert hs == ["1400", "1401", "1402"] and cs == ["1403", "1404", "1405"]
    assert len(hazy) == 6 and len(clear) == 3 and not {p.scene for p in hazy} & {p.scene for p in clear}
    with pytest.raises(ValueError, match="2 scenes"):
        scene_halves(pairs[:2])
    assert isinstance(pd.DataFrame(), pd.DataFrame)


def test_kept_unpaired_weights_leave_out_the_discriminators(tmp_path):
    """A kept unpaired run stores every network but D / D_A / D_B (small committed files); the method
    rebuilt from it dehazes exactly as the trained one did."""
    spec = {"kind": "unpaired", "method": "cyclegan",
            "method_kwargs": {"ngf": 8, "n_blocks": 1, "ndf": 8},
            "train": {"n_steps": 2, "n_steps_decay": 0, "crop": 32, "threads": 1, "device": "cpu", "log_every": 1},
            "data": {"train": "synthetic-train", "test": {"name": "synthetic-test", "max_images": 2}}}
    r = ensure(spec, tmp_path, keep_weights=True, progress=False)
    nets = torch.load(r.weights_file, weights_only=True)["nets"]
    assert set(nets) == {"G_A", "G_B"}
    m = r.method()
    assert set(m.nets) >= {"G_A", "G_B", "D_A", "D_B"}
    rows = pd.read_csv(r.dir / "per_image.csv")
    from dehazelab.runs.execute import score
    from dehazelab.runs.build import prepare

    res, _ = score(m.dehazer().eval(), prepare(launch.parse_spec(spec)).test_set)
    assert math.isclose(res["psnr"], float(rows["psnr"].mean()), rel_tol=0, abs_tol=1e-9)


# ------------------------------------------------------------------------------------------ init (fine-tuning)
def test_init_starts_from_the_named_runs_weights_with_a_prefix(tmp_path):
    """A run with ``init`` starts from the base run's exported weights: zero steps of training would
    leave it equal to the base; an IICL model takes an AOD-Net run's weights under ``backbone.`` and
    keeps its own (seeded) pre-restore module; the summary records the file's hash."""
    import hashlib

    from dehazelab.runs.build import prepare
    from dehazelab.runs.execute import load_init

    base = ensure(PAIRED, tmp_path, keep_weights=True)
    w = torch.load(base.dir / "weights.pt", weights_only=True)["model"]
    plain = launch.parse_spec(_spec(init={"run": base.id}))
    prep = prepare(plain)
    assert any(not torch.equal(prep.model.state_dict()[k], w[k]) for k in w)  # a fresh init differs
    info = load_init(prep, tmp_path / "new")
    assert all(torch.equal(prep.model.state_dict()[k], w[k]) for k in w)
    assert info["sha256"] == hashlib.sha256((base.dir / "weights.pt").read_bytes()).hexdigest()
    assert info["own_init"] == 0

    iicl = launch.parse_spec(_spec(model="iicl-aodnet", loss="iicl", warmup_steps=1,
                                   model_kwargs={"backbone": "aodnet", "use_prm": True, "prm_width": 4},
                                   loss_kwargs={"beta_inter": 0.0, "beta_intra": 0.0},
                                   init={"run": base.id, "prefix": "backbone."}))
    prep = prepare(iicl)
    fresh_prm = {k: v.clone() for k, v in prep.model.state_dict().items() if k.startswith("prm.")}
    info = load_init(prep, tmp_path / "new")
    sd = prep.model.state_dict()
    assert all(torch.equal(sd["backbone." + k], w[k]) for k in w)
    assert fresh_prm and all(torch.equal(sd[k], v) for k, v in fresh_prm.items())
    assert info["own_init"] == len(sd) - len(w) > 0
    # the whole run: trained from the base, its summary names the base
    tuned = ensure(_spec(init={"run": base.id}, **{"train.steps": 2}), tmp_path)
    assert tuned.summary["init"]["run"] == base.id and tuned.id != base.id


def test_init_errors_name_the_file_and_the_problem(tmp_path):
    from dehazelab.runs.build import prepare
    from dehazelab.runs.execute import load_init

    with pytest.raises(launch.LaunchError, match=r"init.run.*must be the folder name"):
        launch.parse_spec(_spec(init={"run": "../x"}))
    with pytest.raises(launch.LaunchError, match=r"init.step.*unknown key"):
        launch.parse_spec(_spec(init={"run": "x", "step": 3}))
    prep = prepare(launch.parse_spec(_spec(init="nothere")))
    with pytest.raises(launch.LaunchError, match=r"nothere/weights.pt does not exist"):
        load_init(prep, tmp_path / "new")
    base = ensure(PAIRED, tmp_path, keep_weights=True)
    prep = prepare(launch.parse_spec(_spec(model="aecrnet", model_kwargs={"ngf": 4}, init=base.id)))
    with pytest.raises(launch.LaunchError, match=r"weights.pt: tensor .* has no place"):
        load_init(prep, tmp_path / "new")
