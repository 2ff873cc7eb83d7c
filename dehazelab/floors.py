"""Quality floors: does a trained model dehaze, measured against the hazy input and the dark channel
prior on the same test images?

The workbook's committed (small) size must show every method working before its claims mean much.
The floors, on the test split, as the seed mean:

* ``headline``: the headline paired models (AECR-Net with CR, IICL on AECR-Net) beat DCP by at
  least 1 dB PSNR and match or beat its SSIM;
* ``aodnet``: AOD-Net reaches 19.5 dB and SSIM 0.80 (its papers report 19.1-20.5 dB on SOTS);
* ``unpaired``: an unpaired method (CUT, FastCUT, CycleGAN, CDD-GAN) is at least 2 dB above the
  hazy input, with a higher SSIM;
* every learned model (``learned``, and all of the above): SSIM not below the hazy input's and a
  mean colour error ΔE (CIEDE2000) not above it.

:func:`check` returns whether a row meets its floor and, if not, which part fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["KINDS", "check", "quality_rows", "met_sentence"]

#: floor kind -> what it asks (the module docstring has the reasons)
KINDS: dict[str, str] = {
    "headline": "≥ DCP + 1 dB, SSIM ≥ DCP's",
    "aodnet": "≥ 19.5 dB, SSIM ≥ 0.80",
    "unpaired": "≥ hazy + 2 dB, SSIM > hazy's",
    "learned": "SSIM ≥ hazy's, ΔE ≤ hazy's",
}


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def check(kind: str, row: Mapping[str, float], hazy: Mapping[str, float], dcp: Mapping[str, float] | None = None
          ) -> tuple[str, str]:
    """``("met" | "not met" | "n/a", reason)`` for a model's seed-mean ``row`` (keys ``psnr``, ``ssim``,
    ``delta_e``) against the ``hazy`` input's and ``dcp``'s scores on the same images. "n/a" when a
    number the floor needs is missing (e.g. results written before ΔE was recorded)."""
    if kind not in KINDS:
        raise ValueError(f"unknown floor kind {kind!r}; known: {', '.join(KINDS)}")
    p, s, de = _num(row.get("psnr")), _num(row.get("ssim")), _num(row.get("delta_e"))
    hp, hs, hde = _num(hazy.get("psnr")), _num(hazy.get("ssim")), _num(hazy.get("delta_e"))
    dp, ds = (_num(dcp.get("psnr")), _num(dcp.get("ssim"))) if dcp else (math.nan, math.nan)
    ops = {">=": lambda v, b: v >= b, ">": lambda v, b: v > b, "<=": lambda v, b: v <= b}
    tests: list[tuple[str, float, float, str]] = []  # (what, value, bound, the relation that must hold)
    if kind == "headline":
        tests += [("PSNR vs DCP + 1 dB", p, dp + 1.0, ">="), ("SSIM vs DCP", s, ds, ">=")]
    elif kind == "aodnet":
        tests += [("PSNR vs 19.5 dB", p, 19.5, ">="), ("SSIM vs 0.80", s, 0.80, ">=")]
    elif kind == "unpaired":
        tests += [("PSNR vs hazy + 2 dB", p, hp + 2.0, ">="), ("SSIM vs hazy", s, hs, ">")]
    tests += [("SSIM vs hazy", s, hs, ">="), ("ΔE vs hazy", de, hde, "<=")]
    missing = sorted({w for w, v, b, _ in tests if not (math.isfinite(v) and math.isfinite(b))})
    failed = list(dict.fromkeys(f"{w}: {v:.3g} vs {b:.3g}" for w, v, b, op in tests
                                if math.isfinite(v) and math.isfinite(b) and not ops[op](v, b)))
    if failed:
        return "not met", "; ".join(failed)
    if missing:
        return "n/a", "not recorded: " + ", ".join(missing)
    return "met", ""


def _ref(df, col: str, name: str) -> dict[str, float] | None:
    r = df[df[col].astype(str).str.startswith(name)]
    if r.empty:
        return None
    r = r.iloc[0]
    return {"psnr": r["PSNR"], "ssim": r["SSIM"], "delta_e": r.get("ΔE", math.nan)}


def quality_rows(notebook: str, df, col: str, models: Mapping[str, tuple[str, str]]) -> list[dict]:
    """Rows of a quality table from one notebook's results table ``df`` (rows named in ``col``, columns
    ``PSNR``, ``SSIM`` and, when recorded, ``ΔE``), whose reference rows start with "hazy input" and
    "DCP": for each ``label: (row name, floor kind)`` of ``models`` present in ``df``, the row's
    numbers, the references' and :func:`check`'s verdict (a part whose reference is missing is "n/a"
    unless another part already fails). Models absent from ``df`` are skipped."""
    hazy, dcp = _ref(df, col, "hazy input"), _ref(df, col, "DCP")
    out = []
    for label, (name, kind) in models.items():
        r = df[df[col] == name]
        if r.empty:
            continue
        r = r.iloc[0]
        row = {"psnr": r["PSNR"], "ssim": r["SSIM"], "delta_e": r.get("ΔE", math.nan)}
        verdict, why = check(kind, row, hazy or {}, dcp)
        out.append({"notebook": notebook[:2], "model": label, "seeds": r.get("seeds"), "PSNR": row["psnr"],
                    "SSIM": row["ssim"], "ΔE": row["delta_e"],
                    "hazy PSNR / SSIM / ΔE": "— (no hazy-input row)" if hazy is None else
                    f"{hazy['psnr']:.2f} / {hazy['ssim']:.3f} / {_num(hazy['delta_e']):.1f}",
                    "DCP PSNR / SSIM": "—" if dcp is None else f"{dcp['psnr']:.2f} / {dcp['ssim']:.3f}",
                    "floor": KINDS[kind], "met": verdict, "why not": why})
    return out


def met_sentence(quality) -> str:
    """Markdown saying how many models of a quality table (rows of :func:`quality_rows`) meet their floor
    and, for each that does not ("not met" or "n/a"), why: ``**3 of 4 trained models meet their floor**;
    not met: AOD-Net (PSNR vs 19.5 dB: 18.2 vs 19.5).``"""
    for col in ("model", "met", "why not"):
        if col not in quality:
            raise KeyError(f"met_sentence: the quality table has no column {col!r} (columns: {list(quality.columns)})")
    ok = quality.met == "met"
    n_met = int(ok.sum())
    not_met = "; ".join(f"{m} ({w})" for m, w in zip(quality.model[~ok], quality["why not"][~ok]))
    return (f"**{n_met} of {len(quality)} trained models meet their floor**"
            + ("" if n_met == len(quality) else "; not met: " + not_met) + ".")
