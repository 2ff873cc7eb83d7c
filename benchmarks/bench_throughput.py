"""Inference throughput and peak memory of every registered model, as ``python -m dehazelab dehaze`` runs it.

    python benchmarks/bench_throughput.py                   # all models, 620x460 and 1600x1200, 2 threads
    python benchmarks/bench_throughput.py --only aodnet dcp --threads 1 --min-sec 1
    python benchmarks/bench_throughput.py --sizes 4000x3000 --only cyclegan-64   # the 2 GB budget

Each (model, size) is measured in a **fresh spawned process** (``multiprocessing`` *spawn*, as
:func:`dehazelab.train.unpaired.measure_cost`), so one measurement's peak memory never leaks into the
next. In the child: ``torch.set_num_threads(threads)``, the model is built from the registry with
**random weights** (throughput does not depend on the weight values), warmed up once on a 128×128
image, then :func:`dehazelab.tiling.dehaze_auto` — exactly what the CLI calls: whole image up to
640×480 pixels, 512-pixel tiles with 64-pixel overlap above (DCP: 1024-pixel tiles) — runs on a
smooth random image until ``--min-sec`` seconds have passed (at least once). Reading and writing the
image files is not timed.

Memory is the child's peak resident set size from ``/proc/self/status`` ``VmHWM`` (Linux), which
belongs to the process's own address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` would do too after
``spawn`` on most systems, but on Linux the maximum RSS survives ``execve`` (the kernel keeps the
pre-exec high-water mark), so a child forked from a large parent can report the parent's size;
``VmHWM`` cannot. It includes the Python interpreter, torch and dehazelab (``base`` column: the
peak after importing them and building the model, before any image) plus the input/output arrays.

Prints a markdown table (and ``--json`` writes the raw rows).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (label, registry name, kwargs, note); small widths = config/small.yaml (01: ngf 16; 02_cut_fastcut:
# ngf 16, n_blocks 6; 04_iicl: ngf 16, prm_width 16), paper widths = the official code's defaults
CONFIGS = [
    ("dcp", "dcp", {}, "no weights"),
    ("aodnet", "aodnet", {}, ""),
    ("aecrnet-16", "aecrnet", {"ngf": 16}, "small-size width"),
    ("aecrnet-64", "aecrnet", {"ngf": 64}, "paper width"),
    ("cut-16", "cut", {"ngf": 16, "n_blocks": 6}, "small.yaml 02 (= fastcut, cddgan at this width)"),
    ("cut-64", "cut", {"ngf": 64, "n_blocks": 9}, "official ResNet-9 (= fastcut, cddgan)"),
    ("cyclegan-16", "cyclegan", {"ngf": 16, "n_blocks": 6}, "small.yaml 02"),
    ("cyclegan-64", "cyclegan", {"ngf": 64, "n_blocks": 9}, "official ResNet-9"),
    ("iicl-16", "iicl", {"backbone_kwargs": {"ngf": 16}, "prm_width": 16}, "small.yaml 04 (AECR-Net ARM)"),
    ("iicl-64", "iicl", {"backbone_kwargs": {"ngf": 64}, "prm_width": 16}, "AECR-Net ARM at paper width"),
]
SIZES = ["620x460", "1600x1200"]


def _vmhwm_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _worker(name: str, kwargs: dict, h: int, w: int, threads: int, min_sec: float, seed: int) -> dict:
    import numpy as np
    import torch

    from dehazelab import models
    from dehazelab.tiling import WHOLE_MAX_PIXELS, dehaze_auto, default_plan

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = models.build(name, **kwargs).eval()
    n_params = sum(p.numel() for p in model.parameters())
    base = _vmhwm_mb()
    rng = np.random.default_rng(seed)
    small = rng.random((h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
    img = np.kron(small, np.ones((16, 16, 1), np.float32))[:h, :w]
    img = np.clip(0.15 + 0.7 * img + rng.normal(0, 0.02, img.shape).astype(np.float32), 0, 1)
    dehaze_auto(model, rng.random((128, 128, 3)).astype(np.float32))  # warm-up (allocator, oneDNN)
    times = []
    t_start = time.perf_counter()
    while not times or time.perf_counter() - t_start < min_sec:
        t0 = time.perf_counter()
        out = dehaze_auto(model, img)
        times.append(time.perf_counter() - t0)
    assert out.shape == img.shape
    plan = default_plan(model)
    return {
        "name": name, "kwargs": kwargs, "size": f"{w}x{h}", "n_params": n_params, "threads": torch.get_num_threads(),
        "runs": len(times), "sec_per_image": float(np.median(times)), "images_per_sec": 1.0 / float(np.median(times)),
        "peak_mb": _vmhwm_mb(), "base_mb": base,
        "path": "whole" if h * w <= WHOLE_MAX_PIXELS else f"tiled {plan.tile}/{plan.overlap}",
        "torch": torch.__version__,
    }


def measure(name, kwargs, h, w, threads, min_sec, seed=0) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_worker, name, kwargs, h, w, threads, min_sec, seed).result()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=SIZES, help="WxH, e.g. 620x460 1600x1200")
    ap.add_argument("--only", nargs="+", default=None, help="labels to run (default all)")
    ap.add_argument("--min-sec", type=float, default=3.0, help="repeat each measurement for at least this long")
    ap.add_argument("--json", default=None, help="also write the raw rows here")
    args = ap.parse_args(argv)

    import torch

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    configs = [c for c in CONFIGS if args.only is None or c[0] in args.only]
    rows = []
    for label, name, kwargs, note in configs:
        for w, h in sizes:
            r = measure(name, kwargs, h, w, args.threads, args.min_sec)
            r.update(label=label, note=note)
            rows.append(r)
            print(f"  {label:12s} {w}x{h}: {r['images_per_sec']:.3f} img/s, peak {r['peak_mb']:.0f} MB "
                  f"({r['path']}, {r['runs']} run(s))", file=sys.stderr, flush=True)
    print(f"\nCPU, {args.threads} threads, torch {torch.__version__}, python {platform.python_version()}, "
          f"random weights; peak = process peak RSS (VmHWM) incl. ~{min(r['base_mb'] for r in rows):.0f} MB "
          "of interpreter + torch\n")
    head = "| model | params | " + " | ".join(f"{w}×{h} img/s | {w}×{h} peak MB" for w, h in sizes) + " | note |"
    print(head)
    print("|" + "---|" * (3 + 2 * len(sizes)))
    for label, *_rest in configs:
        mine = [r for r in rows if r["label"] == label]
        cells = []
        for (w, h), r in zip(sizes, mine):
            ips = r["images_per_sec"]
            tiled = " (tiled)" if r["path"] != "whole" else ""
            cells += [f"{ips:.2f}" if ips >= 0.1 else f"{ips:.3f}", f"{r['peak_mb']:.0f}{tiled}"]
        print(f"| {label} | {mine[0]['n_params']:,} | " + " | ".join(cells) + f" | {mine[0]['note']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
