"""What notebook 04 (the IICL reconstruction) states before it trains anything (d2l style: defined once here).

* :func:`settings_table` — the settings of a run beside the IICL paper's (unknown: abstract only) and those of
  a paper-scale run of the reconstruction (``config/full.yaml``);
* :func:`notebook_assumptions` — the choices the notebook itself makes, each tagged with its source, in
  words that name the notebook's parameters;
* :func:`assumptions_table` — every assumption of the reconstruction: the tagged bullets of the library
  modules that implement it (:func:`dehazelab.tables.tagged_assumptions`), then the notebook's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from . import tables

__all__ = ["SETTINGS_COLUMNS", "ASSUMPTION_COLUMNS", "settings_table", "notebook_assumptions", "assumptions_table"]

#: Columns of :func:`settings_table`.
SETTINGS_COLUMNS = ["setting", "IICL paper", "paper-scale run of this reconstruction (config/full.yaml)", "this run"]
#: Columns of :func:`assumptions_table`.
ASSUMPTION_COLUMNS = ["component", "source", "assumption"]


def settings_table(p: Mapping[str, Any], full: Mapping[str, Any], train_source: str, n_train: int,
                   n_test: int) -> pd.DataFrame:
    """One row per setting (:data:`SETTINGS_COLUMNS`): what the paper says, the paper-scale value ``full``
    (notebook 04's section of ``config/full.yaml``; empty when it gives none) and this run's, from the
    notebook's parameters ``p``; the data is named by ``train_source`` with ``n_train`` training and
    ``n_test`` test pairs."""
    def f(key: str) -> str:
        return str(full.get(key, ""))

    max_test = "all" if full.get("max_test_images", 1) == 0 else f("max_test_images")
    rows = [
        ("training data", "unknown ('the dehazing benchmark')", "RESIDE ITS, 13,990 pairs (target; not wired yet)",
         f"{train_source}: {n_train} pairs (scenes 1400-1429)"),
        ("test data", "unknown (presumably SOTS)", "SOTS-indoor, 500 pairs (target; full.yaml scores every test pair)",
         f"{n_test} pairs of the unseen scenes 1430-1439, full resolution"),
        ("backbones (ARM)", "'various dehazing models'", "AECR-Net, AOD-Net", ", ".join(p["backbones"])),
        ("AECR-Net width ngf", "unknown", f("ngf"), str(p["ngf"])),
        ("PRM width", "unknown ('efficient')", f("prm_width"), str(p["prm_width"])),
        ("training crop", "unknown", f("crop"), str(p["crop"])),
        ("batch", "unknown", f("batch_size"), str(p["batch_size"])),
        ("backbone trained with L1 first", "no (unknown)", f"{f('steps')} steps",
         f"{p['steps']:,} steps at {p['lr']:g} (AOD-Net: {p['aod_steps']:,} at {p['aod_lr']:g}), shared with notebook 01"),
        ("PRM warm-up steps", "unknown", f("warmup_steps"), str(p["warmup_steps"])),
        ("steps of every variant", "unknown", f("finetune_steps"), f"{p['finetune_steps']:,} (fine-tune)"),
        ("learning rate (Adam, cosine)", "unknown", f("finetune_lr"), f"{p['finetune_lr']:g}"),
        ("intra patches (side, k per group)", "unknown", f"{f('intra_patch')}, {f('intra_k')}",
         f"{p['intra_patch']}, {p['intra_k']}"),
        ("test images per run", "unknown", max_test, str(n_test)),
        ("seeds", "unknown", str(len(full.get("seeds", []))), str(len(p["seeds"]))),
    ]
    return pd.DataFrame(rows, columns=SETTINGS_COLUMNS)


def notebook_assumptions(p: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The choices notebook 04 makes itself, as ``("this notebook", source, assumption)`` rows whose text
    names the values of its parameters ``p`` (steps, learning rate, warm-up, intra patches)."""
    me = "this notebook"
    return [
        (me, "methods.md §4.3 rec. 6",
         "Two ARM backbones of different kinds (AECR-Net, an FFA-style autoencoder; AOD-Net, a 1,761-parameter "
         "ASM-based CNN), each as backbone alone / + PRM / + IICL / + PRM + IICL, PSNR/SSIM on SOTS-indoor."),
        (me, "our choice",
         f"Every variant starts from its backbone trained with L1 alone ({p['steps']:,} steps for AECR-Net, "
         f"{p['aod_steps']:,} for AOD-Net: notebook 01's runs) and trains {p['finetune_steps']:,} steps at lr "
         f"{p['finetune_lr']:g}; the PRM and its input adapter start from their seeded initialisation (the adapter "
         "passes J0 through)."),
        (me, "our choice",
         f"Progressive training = two trainer runs: {p['warmup_steps']} PRM-only warm-up steps (ARM frozen, loss "
         f"L1(J0, J)), then {p['finetune_steps']} joint steps (fresh Adam and cosine schedule). Variants without a "
         "PRM get the same joint steps and no warm-up, so the +PRM variants see the PRM-only steps in addition."),
        (me, "our choice",
         "'+ IICL' without a PRM = the backbone with the inter (negative: hazy input only) and intra terms; "
         "'+ PRM' = the PRM -> ARM network with L1 + lambda_prm L1(J0, J), no contrast."),
        (me, "our choice",
         f"Intra patches in the {p['crop']}x{p['crop']} training crops: side {p['intra_patch']}, k = {p['intra_k']} "
         f"per group, selected by {p['intra_by']} of the hazy crop (every crop is one 'image' of the intra contrast)."),
        (me, "our choice",
         "Same seed = the same L1-trained backbone weights, the same data order and crops in the joint stage: "
         "differences between variants are paired by seed."),
        (me, "our choice",
         "Metrics: scikit-image PSNR/SSIM (RGB, data range 1) on full test images, output clamped to [0, 1]."),
    ]


def assumptions_table(p: Mapping[str, Any]) -> pd.DataFrame:
    """Every assumption of the reconstruction (:data:`ASSUMPTION_COLUMNS`): the tagged docstring bullets of
    ``dehazelab.models.prm``, ``dehazelab.models.iicl`` and ``dehazelab.losses.iicl``, in that order, then
    :func:`notebook_assumptions` of the parameters ``p``."""
    import dehazelab.losses.iicl as iicl_losses
    import dehazelab.models.iicl as iicl_models
    import dehazelab.models.prm as prm_module

    rows = (tables.tagged_assumptions(prm_module, "PRM (dehazelab/models/prm.py)")
            + tables.tagged_assumptions(iicl_models, "PRM -> ARM (dehazelab/models/iicl.py)")
            + tables.tagged_assumptions(iicl_losses, "losses (dehazelab/losses/iicl.py)"))
    return pd.DataFrame(rows + notebook_assumptions(p), columns=ASSUMPTION_COLUMNS)
