"""Data-parallel training: 2 processes under the real launcher (``torch.distributed.run``, gloo,
CPU) give the same result as 1 process with the same *global* batch.

``tests/ddp_worker.py`` runs every scenario (paired run, paired run interrupted and resumed, tiny CUT,
the collectives, a bad batch size) once as a plain process and once under
``python -m torch.distributed.run --nproc-per-node 2``; the module fixture launches both (about 25 s
on 2 cores) and the tests compare what they left on disk.

Tolerances: the two runs do the same mathematics in a different float summation order (per-rank
means averaged vs one mean over the global batch), so weights agree to ~1e-7 (paired) / ~1e-6
(CUT) — asserted with ``atol=1e-5, rtol=1e-4``, while training moves every tested tensor by more
than 1e-3, so a run that ignored half the batch or skipped the averaging would fail.

Why CUT can be compared at all: CUT samples its PatchNCE positions from each rank's *own* global
RNG (ranks > 0 are re-seeded), so in general the two runs differ by that randomness. Here
``num_patches`` (484) is at least the number of positions of every tapped layer at the 16² crop
(22², 16², 8², 4², 4²), and then ``dehazelab.models.projection_head.sample_positions`` returns all
positions in raster order without drawing from the RNG: the loss is the same function on every rank
and in the single process. Excluded from the weight comparison are the conv biases that feed a
non-affine ``InstanceNorm2d`` (the norm subtracts them again): the loss does not depend on them,
their exact gradient is 0, and Adam turns the float noise of that zero into ±lr steps of random
sign — they are checked through the generator's *outputs* instead, which they cannot affect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from dehazelab.io import read_json
from dehazelab.repro import pick_device
from dehazelab.train import distributed as ddp
from dehazelab.train.config import PairedTrainConfig
from dehazelab.train.paired import EpochSampler, epoch_loader, train_paired
from dehazelab.train.unpaired import UnpairedTrainConfig, train_unpaired

HERE = Path(__file__).resolve().parent
WORKER = HERE / "ddp_worker.py"
ATOL, RTOL = 1e-5, 1e-4
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
            "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    return env


def _run(cmd: list[str], timeout: int = 300) -> None:
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=str(HERE.parent))
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one = tmp_path_factory.mktemp("one_process")
    two = tmp_path_factory.mktemp("two_processes")
    _run([sys.executable, str(WORKER), str(one)])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
          "--master-port", str(_free_port()), str(WORKER), str(two)])
    load = lambda p: torch.load(p, weights_only=False)  # the worker's own report (plain dicts of tensors)
    return {"one": one, "two": two, "rep1": load(one / "worker_rank0.pt"),
            "rep2": [load(two / f"worker_rank{r}.pt") for r in (0, 1)]}


def _close(a: dict, b: dict, skip: set[str] = frozenset()) -> None:
    assert set(a) == set(b)
    for k in a:
        if k not in skip:
            torch.testing.assert_close(a[k], b[k], atol=ATOL, rtol=RTOL, msg=lambda m: f"{k}: {m}")


def _moved(a: dict, b: dict, skip: set[str] = frozenset()) -> float:
    return min(float((a[k] - b[k]).abs().max()) for k in a if k not in skip)


def _last_model(folder: Path) -> dict:
    return torch.load(folder / "last.pt", map_location="cpu", weights_only=True)["model"]


def _gauge_biases(net: nn.Module) -> set[str]:
    """Names of conv biases directly followed by a non-affine InstanceNorm (the loss ignores them)."""
    out = set()
    for prefix, mod in net.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (name, a), (_, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and a.bias is not None and isinstance(b, nn.InstanceNorm2d) and not b.affine:
                    out.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return out


LOSS_COLS = ("loss", "grad_norm", "gnorm_", "psnr", "ssim")


def _same_history(h1: pd.DataFrame, h2: pd.DataFrame) -> None:
    assert list(h1["step"]) == list(h2["step"]) == sorted(set(h1["step"]))  # no duplicated rows from rank 1
    cols = [c for c in h1.columns if c.startswith(LOSS_COLS)]
    assert cols and set(cols) <= set(h2.columns)
    pd.testing.assert_frame_equal(h1[cols], h2[cols], check_exact=False, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------ paired
def test_paired_two_processes_match_one_process(runs):
    one, two = runs["one"], runs["two"]
    w1, w2 = _last_model(one / "paired_rank0"), _last_model(two / "paired_rank0")
    _close(w1, w2)
    assert _moved(w1, runs["rep1"]["paired_initial"]) > 1e-3  # training changed every tensor: the test can fail
    _same_history(pd.read_csv(one / "paired_rank0" / "history.csv"), pd.read_csv(two / "paired_rank0" / "history.csv"))
    r1, r2 = (read_json(d / "paired_rank0" / "config.json")["resolved"] for d in (one, two))
    assert (r1["world_size"], r1["backend"], r1["batch_per_rank"]) == (1, None, 4)
    assert (r2["world_size"], r2["backend"], r2["batch_per_rank"]) == (2, "gloo", 2)
    assert read_json(one / "paired_rank0" / "config.json")["config_hash"] == read_json(
        two / "paired_rank0" / "config.json")["config_hash"]


def test_ranks_above_zero_write_nothing_and_end_equal(runs):
    two = runs["two"]
    assert not (two / "paired_rank1").exists()  # rank 1 had its own out_dir and never created it
    assert not (two / "bad").exists()
    for sub in ("paired_resume", "cut"):
        assert sorted(p.name for p in (two / sub).iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt"]
    r0, r1 = runs["rep2"]
    for key in ("paired_final", "paired_resume_final"):
        for k in r0[key]:
            assert torch.equal(r0[key][k], r1[key][k]), (key, k)  # same averaged update on every rank
    for net in r0["cut_final"]:
        for k in r0["cut_final"][net]:
            assert torch.equal(r0["cut_final"][net][k], r1["cut_final"][net][k]), (net, k)
    assert runs["rep1"]["paired_hist_len"] == r0["paired_hist_len"] == 6
    assert r1["paired_hist_len"] == 0  # its own (empty) out_dir: ranks > 0 return what rank 0 wrote there
    assert r0["paired_resume_hist_len"] == r1["paired_resume_hist_len"] == 6  # shared folder: the same history


def test_paired_resume_under_two_processes(runs):
    one, two = runs["one"], runs["two"]
    # resumed 2-process run (every rank loaded last.pt at step 3) vs the uninterrupted 1-process run
    _close(_last_model(one / "paired_rank0"), _last_model(two / "paired_resume"))
    assert read_json(two / "paired_resume" / "config.json")["resolved"]["resumed_from_step"] == 3
    _same_history(pd.read_csv(one / "paired_rank0" / "history.csv"), pd.read_csv(two / "paired_resume" / "history.csv"))


# ------------------------------------------------------------------------------------ unpaired
def test_cut_two_processes_match_one_process(runs):
    from dehazelab.methods import build_method

    sys.path.insert(0, str(HERE))
    import ddp_worker

    one, two = runs["one"], runs["two"]
    f1, f2 = runs["rep1"]["cut_final"], runs["rep2"][0]["cut_final"]
    m = build_method("cut", **ddp_worker.CUT_KW)
    for name in ("G", "D", "F"):
        skip = _gauge_biases(m.nets[name])
        if name in ("G", "D"):
            assert skip, name  # the structural search found them
        _close(f1[name], f2[name], skip=skip)
    g_skip = _gauge_biases(m.nets["G"])
    assert _moved(f1["G"], runs["rep1"]["cut_initial"], skip=g_skip) > 1e-4
    # rank 0's last.pt (weights_only) holds the generator (inside the dehazer wrapper)
    for folder, f in ((one, f1), (two, f2)):
        last = {k.removeprefix("generator."): v for k, v in _last_model(folder / "cut").items()}
        torch.testing.assert_close(last, f["G"], atol=0, rtol=0)
    # the generator as a function (gauge biases included) agrees
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    outs = []
    for w in (f1, f2):
        mm = build_method("cut", **ddp_worker.CUT_KW)
        mm.nets["G"].load_state_dict(w["G"])
        with torch.no_grad():
            outs.append(mm.dehazer().eval()(x))
    torch.testing.assert_close(outs[0], outs[1], atol=ATOL, rtol=RTOL)
    _same_history(pd.read_csv(one / "cut" / "history.csv"), pd.read_csv(two / "cut" / "history.csv"))
    assert read_json(two / "cut" / "config.json")["resolved"]["world_size"] == 2


# ------------------------------------------------------------------------------------ helpers, errors
def test_collectives(runs):
    h = runs["rep2"][0]["helpers"]
    assert h == runs["rep2"][1]["helpers"] | {"mismatch": h["mismatch"]}
    assert h["mean"] == [1.5] * 3
    assert h["grad_a"] == [1.5, 1.5]        # (1 + 2) / 2
    assert h["grad_b"] == [2.0, 2.0]        # (0 + 4) / 2: a missing gradient counts as zero
    assert h["grad_c_none"] is True         # no rank had one: stays None (Adam skips it as in 1 process)
    assert h["bcast"] == [0.0] * 4          # rank 0's weights everywhere
    assert h["adam_exp_avg"] == pytest.approx([0.1] * 4)  # rank 0's moments: (1 - 0.9) * grad 1
    assert (h["any"], h["all"]) == (True, False)
    assert h["means"] == {"x": 0.5, "y": 1.0}
    assert "different quantities" in h["mismatch"]
    assert "helpers" not in runs["rep1"]


def test_global_batch_not_divisible_under_torchrun(runs):
    msg = runs["rep2"][0]["bad_batch"]
    assert msg is not None and "batch_size=3" in msg and "world size 2" in msg
    assert runs["rep1"]["bad_batch"] is None  # fine in one process


def test_batch_check_before_any_process_group(tmp_path, monkeypatch):
    """The divisibility error comes before torch.distributed is touched (no launcher needed)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = PairedTrainConfig(steps=2, batch_size=3, crop=8, augment=False, device="cpu")
    with pytest.raises(ValueError, match=r"batch_size=3 is not divisible by the world size 2"):
        train_paired(nn.Conv2d(3, 3, 1), None, [], None, cfg, tmp_path / "p", progress=False)
    ucfg = UnpairedTrainConfig(n_steps=1, n_steps_decay=0, crop=8, batch_size=5, device="cpu")
    with pytest.raises(ValueError, match=r"batch_size=5 is not divisible by the world size 2"):
        train_unpaired(None, [], None, ucfg, tmp_path / "u", progress=False)
    assert not (tmp_path / "p").exists() and not (tmp_path / "u").exists()
    assert not torch.distributed.is_initialized()


def test_dist_context_from_env(monkeypatch):
    for k in DIST_ENV:
        monkeypatch.delenv(k, raising=False)
    ctx = ddp.DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (0, 1, 0, False, True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = ddp.DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (3, 4, 1, True, False)
    assert ctx.local_batch(8) == 2
    with pytest.raises(ValueError, match="outside"):
        ddp.DistContext(rank=4, world_size=4)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        ddp.DistContext.from_env()


def test_helpers_are_noops_in_one_process():
    assert not ddp.is_active()
    t = torch.tensor([1.0, 2.0])
    assert ddp.all_reduce_mean_(t) is t and t.tolist() == [1.0, 2.0]
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    ddp.average_gradients_([p])
    assert p.grad.tolist() == [1.0, 1.0]
    assert ddp.mean_over_ranks({"a": 1}) == {"a": 1.0}
    assert ddp.any_rank(True) and not ddp.all_ranks(False)
    ddp.barrier()
    ddp.broadcast_module_(nn.Linear(2, 2))
    ctx, dev = ddp.init_distributed("cpu")
    assert not ctx.enabled and dev == torch.device("cpu") and not torch.distributed.is_initialized()


def test_pick_device_under_torchrun_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda", 1)  # no CUDA call: only the device name
    assert pick_device("cuda:0") == torch.device("cuda", 0)  # explicit index kept (init_distributed rejects it)
    monkeypatch.delenv("WORLD_SIZE")
    assert pick_device("cuda") == torch.device("cuda")


def test_epoch_sampler_shards_each_global_batch():
    n, seed, bs, w = 11, 4, 4, 2
    one = list(EpochSampler(n, seed, epoch=3, start=4))
    shards = [list(EpochSampler(n, seed, epoch=3, start=4, rank=r, world_size=w, batch_size=bs)) for r in range(w)]
    lb = bs // w
    n_batches = len(one) // bs  # the incomplete last global batch is dropped
    assert all(len(s) == n_batches * lb for s in shards)
    for j in range(n_batches):
        assert sum((s[j * lb:(j + 1) * lb] for s in shards), []) == one[j * bs:(j + 1) * bs]
    assert len(EpochSampler(n, seed, 3, 4, rank=1, world_size=w, batch_size=bs)) == n_batches * lb
    with pytest.raises(ValueError, match="not divisible"):
        EpochSampler(n, seed, 0, rank=0, world_size=3, batch_size=4)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.tensor(i)

    cfg = PairedTrainConfig(steps=1, batch_size=4, crop=1, seed=seed)
    full = [b.tolist() for b in epoch_loader(DS(), cfg, 0)]
    parts = [[b.tolist() for b in epoch_loader(DS(), cfg, 0, rank=r, world_size=2)] for r in range(2)]
    assert [p0 + p1 for p0, p1 in zip(*parts)] == full
