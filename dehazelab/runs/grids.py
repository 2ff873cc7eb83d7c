"""Each notebook's runs, declared once: variants × seeds as run specs.

``grid(notebook, params)`` turns a notebook's parameters (its parameters cell, overridden by the
size's ``config/<size>.yaml``) into the list of :class:`GridRun`. The Snakefile expands it into one
train job per run; the notebook calls :func:`dehazelab.runs.ensure` on the same list, so both always
agree on what a notebook trains. Which runs keep their weights (``keep``) is decided here too: the
first seed of every variant, which the qualitative figures and the exported checkpoints use.

Without a data folder the runs train on the synthetic sets (``synthetic-train`` / ``synthetic-test``),
named in the spec — never silently.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .store import run_id

__all__ = ["GridRun", "grid", "GRIDS", "notebook_defaults", "notebook_params"]


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One run of a notebook: its variant name (a row of the notebook's tables), seed and spec."""

    variant: str
    seed: int
    spec: dict[str, Any]
    keep: bool = False

    @property
    def id(self) -> str:
        """The run's folder name: :func:`~dehazelab.runs.store.run_id` of the spec with its defaults filled in."""
        from ..launch import parse_spec

        return run_id(parse_spec(self.spec).to_dict())


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The parameters cell of ``notebooks/<notebook>.py`` (its smoke defaults), as Python values."""
    from .. import paths

    p = Path(notebook)
    if not p.suffix:
        p = paths.ROOT / "notebooks" / f"{notebook}.py"
    text = p.read_text(encoding="utf-8")
    start = text.index('# %% tags=["parameters"]')
    end = text.index("\n# %%", start + 1)
    out: dict[str, Any] = {}
    for node in ast.parse(text[start:end]).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def notebook_params(notebook: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A notebook's parameters as papermill gives them: the defaults with ``overrides`` applied."""
    return {**notebook_defaults(notebook), **dict(overrides or {})}


def _data(p: Mapping[str, Any], has_data: bool) -> dict[str, Any]:
    test = {"levels": [int(v) for v in p["test_levels"]], "max_images": int(p["max_test_images"])}
    if has_data:
        return {"train": "sots-train", "test": {"name": "sots-test", **test}}
    return {"train": "synthetic-train", "test": {"name": "synthetic-test", "max_images": test["max_images"]}}


def _paired_train(p: Mapping[str, Any], seed: int, threads: int, steps: int | None = None,
                  lr: float | None = None, eval_every: int | None = None) -> dict[str, Any]:
    steps = int(p["steps"] if steps is None else steps)
    return {"steps": steps, "batch_size": int(p["batch_size"]), "crop": int(p["crop"]),
            "lr": float(p["lr"] if lr is None else lr), "seed": seed, "threads": threads,
            "eval_every": int(p.get("eval_every", 0) if eval_every is None else eval_every),
            "log_every": max(1, steps // 20)}


def _residual(p: Mapping[str, Any]) -> dict[str, Any]:
    """``{"global_residual": True}`` when the notebook's ``global_residual`` parameter is on, else ``{}``
    (so runs without it keep the ids they had before the switch existed)."""
    return {"global_residual": True} if p.get("global_residual", False) else {}


def _steps(p: Mapping[str, Any], key: str, below: str | None = None) -> int:
    v = int(p.get(key, 0))
    if v < 1:
        raise ValueError(f"parameter {key} must be >= 1, got {p.get(key)!r}")
    if below is not None and v >= int(p[below]):
        raise ValueError(f"parameter {key} ({v}) must be below {below} ({p[below]}): the runs would coincide")
    return v


def l1_base(p: Mapping[str, Any], model: str, seed: int, threads: int, has_data: bool) -> GridRun:
    """The L1-trained run of ``model`` (``aecrnet``: the full AECR-Net, ``steps`` at ``lr``; ``aodnet``:
    ``aod_steps`` at ``aod_lr``) that notebook 01 reports and that the contrastive rows of 01 and 04
    fine-tune (its weights are kept). Notebooks 01 and 04 build it from the same parameters, so with
    equal values they name the same run and it is trained once."""
    if model == "aecrnet":
        kw, train, name = {"ngf": int(p["ngf"]), **_residual(p)}, _paired_train(p, seed, threads), "AECR-Net (L1)"
    else:
        kw, name = {}, "AOD-Net"
        train = _paired_train(p, seed, threads, steps=int(p.get("aod_steps", p["steps"])),
                              lr=float(p.get("aod_lr", p["lr"])))
    spec = {"kind": "paired", "description": f"{name}, trained with L1 (notebooks 01 and 04)", "model": model, "model_kwargs": kw, "loss": "l1",
            "train": train, "data": _data(p, has_data)}
    return GridRun(name, seed, spec, keep=True)


def _finetune(p: Mapping[str, Any], base: GridRun, spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``spec`` started from ``base``'s weights for ``finetune_steps`` at ``finetune_lr`` (a fresh cosine
    schedule), evaluated at its end (and every ``eval_every`` steps)."""
    steps = _steps(p, "finetune_steps")
    out = dict(spec)
    out["train"] = _paired_train(p, base.seed, int(base.spec["train"]["threads"]), steps=steps,
                                 lr=float(p["finetune_lr"]))
    out["init"] = {"run": base.id, "prefix": prefix}
    return out


def _grid_01(p: Mapping[str, Any], threads: int, has_data: bool) -> list[GridRun]:
    """Notebook 01: AOD-Net and the AECR-Net trained with L1 from scratch (``steps``); the architecture
    ablation from scratch at ``ablation_steps``; every CR row (and an L1-only control) as a fine-tune of
    the seed's AECR-Net (L1) run for ``finetune_steps`` — the contrastive term's VGG-19 costs 5-10x an
    L1 step, so only the fine-tune carries it (a departure from the paper, which trains with CR
    throughout; the notebook says so)."""
    ae = {"ngf": int(p["ngf"]), **_residual(p)}
    beta, r = float(p["beta"]), int(p["r"])
    cr = {"beta": beta, "vgg_weights": p["vgg_weights"]}
    ablation_steps = _steps(p, "ablation_steps", below="steps")
    scratch = {"base AE": {**ae, "use_dfe": False, "use_mix": False}, "+ DFE": {**ae, "use_mix": False}, "+ mixup": ae}
    tuned = {"L1 (continued)": ("l1", {}), "+ CR positive-only": ("cr", {**cr, "ablation": True}),
             "+ CR (1:1)": ("cr", cr), "1:r": ("cr", {**cr, "n_neg": 1 + r}), "r:1": ("cr", {**cr, "n_pos": 1 + r}),
             "r:r": ("cr", {**cr, "n_pos": 1 + r, "n_neg": 1 + r})}
    tables = set(p["tables"])
    needed = {"AECR-Net (L1)", "L1 (continued)", "+ CR (1:1)"}
    if "table1" in tables:
        needed |= {"AOD-Net"}
    if "table2" in tables:
        needed |= {"base AE", "+ DFE", "+ mixup", "+ CR positive-only"}
    if "table4" in tables:
        needed |= {"1:r", "r:1", "r:r"}
    seeds = [int(s) for s in p["seeds"]]
    out = []
    for seed in seeds:
        if "AOD-Net" in needed:
            out.append(l1_base(p, "aodnet", seed, threads, has_data))
        base = l1_base(p, "aecrnet", seed, threads, has_data)
        out.append(base)
        for name, kw in scratch.items():
            if name in needed:
                spec = {"kind": "paired", "description": f"01 {name}", "model": "aecrnet", "model_kwargs": dict(kw),
                        "loss": "l1", "train": _paired_train(p, seed, threads, steps=ablation_steps),
                        "data": _data(p, has_data)}
                out.append(GridRun(name, seed, spec, keep=seed == seeds[0]))
        for name, (loss, lkw) in tuned.items():
            if name in needed:
                spec = {"kind": "paired", "description": f"01 {name} (fine-tuned)", "model": "aecrnet",
                        "model_kwargs": dict(ae), "loss": loss, "data": _data(p, has_data)}
                if loss != "l1":
                    spec["loss_kwargs"] = dict(lkw)
                out.append(GridRun(name, seed, _finetune(p, base, spec), keep=seed == seeds[0]))
    return out


#: Share of the iterations in the linear lr decay, from the official epoch recipes (docs/methods.md
#: §2.6-2.7): CUT 200 + 200, FastCUT 150 + 50, CycleGAN 100 + 100 epochs.
DECAY_FRACTION = {"cut": 0.5, "fastcut": 0.25, "cyclegan": 0.5}


def _unpaired_train(p: Mapping[str, Any], seed: int, threads: int, decay_fraction: float,
                    decay_data: str = "keep") -> dict[str, Any]:
    steps = int(p["steps"])
    n_decay = round(steps * decay_fraction)
    return {"n_steps": steps - n_decay, "n_steps_decay": n_decay, "crop": int(p["crop"]),
            "batch_size": int(p.get("batch_size", 1)), "augment": True, "decay_data": decay_data,
            "eval_every": int(p.get("eval_every", 0)), "seed": seed, "threads": threads,
            "log_every": max(1, steps // 25)}


def _overrides(p: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The notebook's ``loss_weights`` parameter (``{method or row: {keyword: value}}``, e.g. a weaker
    cycle term), checked against ``names``; every name gets a (possibly empty) dict. Absent or empty →
    the methods' own (the papers') weights, and the run ids they had before the parameter existed."""
    lw = dict(p.get("loss_weights") or {})
    unknown = sorted(set(lw) - set(names))
    if unknown:
        raise ValueError(f"loss_weights: unknown name {unknown[0]!r} (known: {', '.join(names)})")
    return {n: {str(k): float(v) for k, v in (lw.get(n) or {}).items()} for n in names}


def _grid_02(p: Mapping[str, Any], threads: int, has_data: bool) -> list[GridRun]:
    common = {"ngf": int(p["ngf"]), "n_blocks": int(p["n_blocks"]), "ndf": int(p["ndf"]), **_residual(p)}
    over = _overrides(p, ("cut", "fastcut", "cyclegan"))
    kwargs = {"cut": {**common, "num_patches": int(p["num_patches"]), **over["cut"]},
              "fastcut": {**common, "num_patches": int(p["num_patches"]), **over["fastcut"]},
              "cyclegan": {**common, **over["cyclegan"]}}
    seeds = [int(s) for s in p["seeds"]]
    out = []
    for seed in seeds:
        for m in ("cut", "fastcut", "cyclegan"):
            spec = {"kind": "unpaired", "description": f"02 {m}", "method": m,
                    "method_kwargs": {"seed": seed, **kwargs[m]},
                    "train": _unpaired_train(p, seed, threads, DECAY_FRACTION[m], p.get("decay_data", "keep")),
                    "data": _data(p, has_data)}
            out.append(GridRun(m, seed, spec, keep=seed == seeds[0]))
    return out


CDDGAN_ROWS = ("cyclegan", "contrastive", "cddgan", "cddgan_exemplars")


def _grid_03(p: Mapping[str, Any], threads: int, has_data: bool) -> list[GridRun]:
    common = {"ngf": int(p["ngf"]), "n_blocks": int(p["n_blocks"]), "ndf": int(p["ndf"]),
              "num_patches": int(p["num_patches"]), "num_negatives": int(p["num_negatives"]),
              "netF_nc": int(p["netF_nc"]), **_residual(p)}
    over = {k: float(v) for k, v in (p.get("cycle_weights") or {}).items()}  # every row alike
    nce = p.get("lambda_NCE")  # the contrastive rows' weight (None: CDD-GAN's default); the CycleGAN row has none
    seeds = [int(s) for s in p["seeds"]]
    out = []
    for seed in seeds:
        for v in CDDGAN_ROWS:
            spec = {"kind": "unpaired", "description": f"03 {v}", "method": "cddgan",
                    "method_kwargs": {"seed": seed, "variant": v, **common, **over,
                                      **({"lambda_NCE": float(nce)} if nce is not None and v != "cyclegan" else {})},
                    "train": _unpaired_train(p, seed, threads, float(p["decay_fraction"])), "data": _data(p, has_data)}
            out.append(GridRun(v, seed, spec, keep=seed == seeds[0]))
    return out


#: IICL's four variants per backbone: with the pre-restore module (PRM) and/or the contrastive terms.
IICL_VARIANTS = {"backbone": dict(prm=False, iicl=False), "+ PRM": dict(prm=True, iicl=False),
                 "+ IICL": dict(prm=False, iicl=True), "+ PRM + IICL": dict(prm=True, iicl=True)}
IICL_MODEL = {"aecrnet": "iicl", "aodnet": "iicl-aodnet"}  # registry names (the CLI's --model)


def _grid_04(p: Mapping[str, Any], threads: int, has_data: bool) -> list[GridRun]:
    """Notebook 04: per backbone, its L1-trained run (:func:`l1_base`, the same run as notebook 01's when
    the parameters agree) and four fine-tunes of it for ``finetune_steps`` — backbone alone (L1), + PRM
    (its ``warmup_steps`` first), + IICL terms, + PRM + IICL — so every variant has the same budget."""
    seeds = [int(s) for s in p["seeds"]]
    out = []
    for bb in p["backbones"]:
        for seed in seeds:
            base = l1_base(p, bb, seed, threads, has_data)
            out.append(dataclasses.replace(base, variant=f"{bb}/L1 base"))
            for variant, v in IICL_VARIANTS.items():
                kw: dict[str, Any] = {"backbone": bb,
                                      "backbone_kwargs": base.spec["model_kwargs"],
                                      "use_prm": v["prm"]}
                if v["prm"]:
                    kw.update(prm_width=int(p["prm_width"]), arm_input=p["arm_input"])
                loss = {"lambda_prm": float(p["lambda_prm"]) if v["prm"] else 0.0,
                        "beta_inter": float(p["beta_inter"]) if v["iicl"] else 0.0,
                        "beta_intra": float(p["beta_intra"]) if v["iicl"] else 0.0,
                        "tau": float(p["tau"]), "intra_patch": int(p["intra_patch"]), "intra_k": int(p["intra_k"]),
                        "intra_by": p["intra_by"], "intra_layer": p["intra_layer"], "vgg_weights": p["vgg_weights"]}
                spec = {"kind": "paired", "description": f"04 {bb} {variant} (fine-tuned)", "model": IICL_MODEL[bb],
                        "model_kwargs": kw, "loss": "iicl", "loss_kwargs": loss,
                        "warmup_steps": int(p["warmup_steps"]) if v["prm"] else 0, "data": _data(p, has_data)}
                out.append(GridRun(f"{bb}/{variant}", seed, _finetune(p, base, spec, prefix="backbone."),
                                   keep=seed == seeds[0]))
    return out


GRIDS: dict[str, Callable[[Mapping[str, Any], int, bool], list[GridRun]]] = {
    "01_cr_aecrnet": _grid_01, "02_cut_fastcut": _grid_02, "03_cddgan": _grid_03, "04_iicl": _grid_04}


def grid(notebook: str, params: Mapping[str, Any], *, run_threads: int = 1,
         has_data: bool | None = None) -> list[GridRun]:
    """The runs of ``notebook`` (a key of :data:`GRIDS`; others train nothing: ``[]``) for its
    parameters ``params``. ``run_threads``: torch threads of each run (the size config's
    ``run_threads``). ``has_data``: default = whether the project's data folder is configured."""
    if notebook not in GRIDS:
        return []
    if has_data is None:
        from ..paths import data_root

        has_data = data_root() is not None
    runs = GRIDS[notebook](params, int(run_threads), bool(has_data))
    ids = [r.id for r in runs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"{notebook}: two variants describe the same run ({sorted(dup)[0]}); make their specs differ")
    return runs
