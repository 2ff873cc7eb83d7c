"""Command line: ``python -m dehazelab {dehaze,evaluate,verify,models,train}``.

* ``dehaze IN... --model NAME [--weights W] --out DIR [--tile N] [--overlap N]``  files or folders of
  hazy images -> PNGs, any image size: images above 640×480 pixels run in overlapping tiles blended
  with a raised-cosine window (:mod:`dehazelab.tiling`), so memory stays bounded; ``--tile 0`` runs
  every image whole, ``--tile N`` tiles every image with N-pixel tiles. A folder's tree is mirrored
  under ``--out`` (:func:`plan_outputs`); no two inputs are ever written to one path.
* ``evaluate --model NAME [--weights W] --data DIR [--json] [--csv F]``  any supported paired
  layout (SOTS, NH-HAZE/Dense-Haze, O-HAZE/I-HAZE, RESIDE ITS/OTS): mean PSNR/SSIM (scikit-image,
  RGB, data range 1), per-image numbers with ``--csv F`` (nothing is written otherwise); ``--json``
  prints one strict JSON object on stdout.
* ``verify [DIR]``  checks a data folder against the project's SOTS/NH-HAZE subset manifest.
* ``models [--size S]``  the registered models; for each trained one its committed weights file and the
  test PSNR/SSIM of the run that trained it, read from ``results/`` (:mod:`dehazelab.committed`).
* ``train RUN.yaml [--out DIR] [--set KEY=VALUE]... [--no-resume] [--stop-at N]``  trains from a run
  spec (its format: :mod:`dehazelab.runs.spec`; the command: :mod:`dehazelab.launch`); the same
  command runs under ``torchrun -m dehazelab train ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli_evaluate import _progress, cmd_evaluate


#: ``dehaze --max-pixels`` default: 40 megapixels (a 4000x3000 photo is 12).
MAX_PIXELS = 40_000_000


def _collect_inputs(inputs: list[str], notes: list[str] | None = None) -> list[tuple[Path, Path | None]]:
    """``(file, folder argument it was found under or None)`` for every input image.

    Folders are walked without following symlinked subfolders; each one skipped, and each
    subfolder that cannot be read, is reported in ``notes`` (the command prints them)."""
    from .data import DataError
    from .data.images import IMAGE_EXTS

    notes = [] if notes is None else notes
    files: list[tuple[Path, Path | None]] = []
    for raw in inputs:
        if raw == "":
            raise DataError("'': an empty input path (did a shell variable expand to nothing?)")
        p = Path(raw)
        if p.is_dir():
            if p.resolve() == Path(p.resolve().anchor):
                raise DataError(f"{p}: refusing to search a whole file system for images; name a folder of images")
            found: list[Path] = []

            def unreadable(err: OSError) -> None:
                notes.append(f"{err.filename}: folder cannot be read ({err.strerror}), skipped")

            for root, dirs, names in os.walk(p, onerror=unreadable):
                for d in dirs:
                    if os.path.islink(os.path.join(root, d)):
                        notes.append(f"{os.path.join(root, d)}: symlinked folder skipped (name it on the command "
                                     "line to include it)")
                found.extend(Path(root) / n for n in names if Path(n).suffix.lower() in IMAGE_EXTS)
            if not found:
                raise DataError(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
            files.extend((f, p) for f in sorted(found))
        elif p.is_file():
            files.append((p, None))
        elif p.is_symlink():
            raise DataError(f"{p}: a symlink to {os.readlink(p)}, which does not exist")
        else:
            raise DataError(f"{p}: no such file or folder")
    return files


def _out_folder(raw: str) -> Path:
    """``--out`` checked before any work: not empty, not a file, not named like an image."""
    from .data import DataError
    from .data.images import IMAGE_EXTS

    if raw.strip() == "":
        raise DataError("--out '': an empty output folder (use --out . for the current folder)")
    out = Path(raw)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: --out names an existing file; it must be a folder")
    if not out.exists() and out.suffix.lower() in IMAGE_EXTS:
        raise DataError(f"{out}: --out is the output *folder*; {out.name} looks like an image file name")
    return out


def plan_outputs(files: list[tuple[Path, Path | None]], out: Path, model: str) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs: a folder's tree is mirrored under ``out`` (``sub/a.png`` ->
    ``out/sub/a_<model>.png``), a file given by itself goes to ``out/<stem>_<model>.png``. Inputs
    that would still share an output (``x.jpg`` beside ``x.png``) keep their extension in the name
    (``x_jpg_<model>.png``); any remaining clash, or an output that is one of the inputs, is an error
    before anything is written."""
    from .data import DataError

    def target(f: Path, base: Path | None, tag: bool) -> Path:
        rel = f.relative_to(base).parent if base is not None else Path()
        stem = f"{f.stem}_{f.suffix.lstrip('.').lower()}" if tag else f.stem
        return out / rel / f"{stem}_{model}.png"

    plain: dict[Path, list[int]] = {}
    for i, (f, base) in enumerate(files):
        plain.setdefault(target(f, base, False).resolve(), []).append(i)
    tagged = {i for idx in plain.values() if len(idx) > 1 for i in idx}
    planned = [(f, target(f, base, i in tagged)) for i, (f, base) in enumerate(files)]
    seen: dict[Path, Path] = {}
    inputs = {f.resolve() for f, _ in files}
    for f, t in planned:
        key = t.resolve()
        if key in inputs:
            raise DataError(f"{t}: refusing to overwrite an input image")
        if key in seen:
            raise DataError(f"{seen[key]} and {f} would both be written to {t}; dehaze them into separate --out folders")
        seen[key] = f
    return planned


def cmd_dehaze(args) -> int:
    import glob

    from .data import DataError
    from .data.images import read_image, write_image
    from .inference import load_model, registry_entry
    from .io import remove_stale_tmp
    from .tiling import dehaze_auto

    if args.tile is not None and args.tile < 0:
        raise SystemExit(f"--tile must be >= 0 (0 = whole image), got {args.tile}")
    if args.overlap is not None and args.overlap < 0:
        raise SystemExit(f"--overlap must be >= 0, got {args.overlap}")
    if args.tile and args.overlap is not None and args.overlap >= args.tile:
        raise SystemExit(f"--overlap ({args.overlap}) must be smaller than --tile ({args.tile})")
    if args.max_pixels < 0:
        raise SystemExit(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")

    registry_entry(args.model)  # an unknown name is the first thing said
    out = _out_folder(args.out)
    notes: list[str] = []
    planned = plan_outputs(_collect_inputs(args.inputs, notes), out, args.model)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    model = load_model(args.model, args.weights, device=args.device)
    written, failed = [], []
    for f, target in _progress(planned, f"dehaze ({args.model})"):
        try:
            img = read_image(f, max_pixels=args.max_pixels)
        except DataError as exc:
            if args.stop_on_error:
                raise
            failed.append(str(exc))
            continue
        result = dehaze_auto(model, img, tile=args.tile, overlap=args.overlap)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(target.parent, glob.escape(target.name))  # left by a killed earlier run
            write_image(target, result)
        except OSError as exc:  # disk full, read-only, a file where a folder should be: later writes fail too
            why = exc.strerror or str(exc)
            raise DataError(f"{target}: cannot write the output ({why}); {len(written)} image(s) were written "
                            "before it") from None
        written.append(target)
    print(f"wrote {len(written)} image(s) under {out}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(planned)} input(s) could not be dehazed:", file=sys.stderr)
        for msg in failed:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0


def cmd_verify(args) -> int:
    from . import paths
    from .data.subsets import verify

    root = Path(args.root) if args.root else paths.data_root(required=True)
    report = verify(root)
    print(report.summary() if hasattr(report, "summary") else report)
    return 0 if getattr(report, "ok", False) else 1


def _shown_path(p: Path) -> str:
    """``p`` relative to the working directory when it lies below it (pasteable), else absolute."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def cmd_models(args) -> int:
    from .committed import committed_weights
    from .models import MODELS

    found = committed_weights(args.size)
    pad = " " * 13
    for name, entry in sorted(MODELS.items()):
        print(f"{name:12s} {entry.summary}  [{entry.paper}]" + ("  (needs --weights)" if entry.needs_weights else ""))
        w = found.get(name)
        if w is None:
            continue
        if w.path is None:
            print(f"{pad}{args.size} weights: {w.note}")
            continue
        print(f"{pad}{args.size} weights: {_shown_path(w.path)}")
        if w.psnr is None or w.ssim is None:
            print(f"{pad}test PSNR/SSIM: {w.note}")
            continue
        on = f" on {w.n_test} {w.test_set or 'test'} images" if w.n_test else ""
        label = f", {w.label!r}" if w.label else ""
        print(f"{pad}test: PSNR {w.psnr:.2f} dB, SSIM {w.ssim:.4f}{on} (run {w.run}{label})")
    return 0


def cmd_train(args) -> int:
    from .launch import cli_train

    return cli_train(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dehazelab", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("dehaze", help="dehaze image files or folders, writing PNGs")
    d.add_argument("inputs", nargs="+", help="image files or folders")
    d.add_argument("--model", required=True)
    d.add_argument("--weights", default=None)
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--tile", type=int, default=None,
                   help="tile side in pixels; default: whole image up to 640x480 pixels, else 512-pixel tiles "
                        "(DCP: 1024); 0 = always whole")
    d.add_argument("--overlap", type=int, default=None,
                   help="pixels shared by neighbouring tiles, blended with a raised-cosine window (default 64; "
                        "DCP uses at least the 256 its guided filter needs)")
    d.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help=f"refuse images above N pixels (default {MAX_PIXELS:,}, about {MAX_PIXELS * 41 / 1e9:.1f} GB "
                        "to dehaze); 0 = no limit")
    d.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first unreadable input (default: go on, list them at the end, exit 1)")
    d.add_argument("--device", default=None, help="auto (default: CUDA when present), cpu, cuda, cuda:N")
    d.set_defaults(func=cmd_dehaze)

    e = sub.add_parser("evaluate", help="PSNR/SSIM of a model on a paired benchmark folder")
    e.add_argument("--model", required=True)
    e.add_argument("--weights", default=None)
    e.add_argument("--data", required=True, help="a folder in a supported paired layout")
    e.add_argument("--json", action="store_true",
                   help="print one strict JSON object on stdout (an infinite mean PSNR, from an image equal to "
                        "its GT, is null; n_infinite_psnr counts such images)")
    e.add_argument("--csv", default=None, help="write per-image numbers to this CSV file (default: none)")
    e.add_argument("--limit", type=int, default=0, help="evaluate only the first N pairs (0 = all)")
    e.add_argument("--device", default=None, help="auto (default: CUDA when present), cpu, cuda, cuda:N")
    e.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first pair that cannot be read (default: go on, list them, exit 1)")
    e.set_defaults(func=cmd_evaluate)  # dehazelab/cli_evaluate.py

    v = sub.add_parser("verify", help="check a data folder against the project's subset manifest")
    v.add_argument("root", nargs="?", default=None, help="data root (default: $DEHAZELAB_DATA or ../shared/data)")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("models", help="list the registered models, their committed weights and test scores",
                       description="List the registered models; for each trained one, its committed weights "
                                   "(results/<size>/<notebook>/<model>_<size>.pt) and the test PSNR/SSIM of the run "
                                   "that trained them (results/runs/<size>/<id>/summary.json), read from the files.")
    m.add_argument("--size", default="small", help="the results size whose weights are listed (default: small, "
                                                    "the committed one)")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a model from a run spec (also under torchrun)",
                       description="Train from a YAML run spec (see dehazelab/runs/spec.py and config/runs/). "
                                   "Works as `python -m dehazelab train RUN.yaml` and as "
                                   "`torchrun --nproc-per-node N -m dehazelab train RUN.yaml`.")
    t.add_argument("spec", help="run spec (YAML or JSON), e.g. config/runs/aecrnet_full.yaml; - reads it from stdin")
    t.add_argument("--out", default=None, help="run folder (default: results/train/<spec name> in the repository)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key (repeatable), value parsed as YAML, e.g. --set train.steps=10 "
                        "--set model_kwargs.ngf=8")
    t.add_argument("--no-resume", action="store_true", help="start over even if the run folder holds last.pt")
    t.add_argument("--stop-at", type=int, default=None, metavar="N",
                   help="stop after step N (checkpointed; rerun to continue); the schedule still spans train.steps")
    t.add_argument("--keep-weights", action="store_true", help="write weights.pt beside the run's summary.json")
    t.add_argument("--label", default=None, help="the run's name in tables (recorded in summary.json)")
    t.add_argument("--restart-finished", action="store_true",
                   help="a folder whose last.pt is finished but which has no summary.json is trained again from "
                        "step 0 (the pipeline's train jobs: after a code change the run must be recomputed)")
    t.set_defaults(func=cmd_train)
    return ap


def main(argv=None) -> int:
    from .data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which saves and says so itself)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
