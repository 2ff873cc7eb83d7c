"""Which library files a run's numbers depend on: the inputs of its Snakemake train job.

Editing a model, a loss or the trainer must rerun exactly the runs that use it, so each run's job
lists the files of :data:`COMMON` (the trainers, the data pipeline, the run machinery) and those of
its model / method / loss, each with the ``dehazelab`` modules it imports at module level,
transitively. Imports inside functions are not followed, except in the run's own registry builder
(``MODELS[name]`` / ``METHODS[name]``): the registries import every entry lazily, and following
them would make every run depend on every model.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["code_files", "COMMON"]

PKG = Path(__file__).resolve().parents[1]  # .../dehazelab

#: Modules every run executes (the run machinery, both trainers' shared parts, data and metrics).
COMMON = ("dehazelab.launch", "dehazelab.runs.execute", "dehazelab.runs.store", "dehazelab.train.paired",
          "dehazelab.train.config", "dehazelab.train.checkpoint", "dehazelab.repro", "dehazelab.io",
          "dehazelab.metrics", "dehazelab.data.datasets", "dehazelab.data.layouts", "dehazelab.data.selection",
          "dehazelab.data.synthetic", "dehazelab.inference", "dehazelab.models")
LOSS_MODULES = {"l1": (), "cr": ("dehazelab.losses.cr", "dehazelab.models.vgg"),
                "iicl": ("dehazelab.losses.iicl", "dehazelab.losses.cr", "dehazelab.models.vgg")}


def _file(module: str) -> Path | None:
    if module == "dehazelab":
        return PKG / "__init__.py"
    rel = Path(*module.split(".")[1:])
    for cand in (PKG / rel.with_suffix(".py"), PKG / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _resolve(node: ast.ImportFrom | ast.Import, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("dehazelab")]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if not mod.startswith("dehazelab"):
        return []
    # `from .models import vgg` names a submodule; `from .models import MODELS` a name
    subs = [f"{mod}.{a.name}" for a in node.names if _file(f"{mod}.{a.name}") is not None]
    return [mod] + subs


def _imports(tree: ast.AST, package: str, top_level_only: bool) -> list[str]:
    if top_level_only:  # module-level statements, and those under a module-level `if`/`try`
        nodes = [n for stmt in tree.body for n in (ast.walk(stmt) if isinstance(stmt, (ast.If, ast.Try)) else [stmt])]
    else:
        nodes = list(ast.walk(tree))
    out: list[str] = []
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out += _resolve(node, package)
    return out


@lru_cache(maxsize=None)
def _deps(module: str) -> tuple[str, ...]:
    f = _file(module)
    if f is None:
        return ()
    package = module if f.name == "__init__.py" else module.rpartition(".")[0]
    return tuple(_imports(ast.parse(f.read_text(encoding="utf-8")), package, top_level_only=True))


def _closure(modules: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen or _file(m) is None:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run their __init__
        todo += list(_deps(m))
    return seen


def _builder_imports(fn: Any) -> list[str]:
    src = textwrap.dedent(inspect.getsource(fn))
    return _imports(ast.parse(src), fn.__module__, top_level_only=False)


def _module_classes(spec: Mapping[str, Any]) -> set[str]:
    """The modules defining the classes of the model a paired run builds (IICL's backbone is chosen by
    a keyword, so only building it tells which one): a small CPU build, outside the global RNG."""
    import torch

    from ..models import build

    with torch.random.fork_rng(devices=[]):
        model = build(spec["model"], **(spec.get("model_kwargs") or {}))
    return {type(m).__module__ for m in model.modules() if type(m).__module__.startswith("dehazelab")}


def code_files(spec: Mapping[str, Any]) -> list[str]:
    """The library files (relative to the repository root, sorted) a run of ``spec`` depends on."""
    mods = set(COMMON)
    if spec["kind"] == "paired":
        from ..models import MODELS

        entry = MODELS[spec["model"]]
        builder = getattr(entry, "builder", None) or getattr(entry, "build", None) or entry
        mods.update(_builder_imports(builder) if callable(builder) else [])
        mods.update(_module_classes(spec))
        mods.update(LOSS_MODULES[spec.get("loss") or "l1"])
    else:
        from ..methods import METHODS

        mods.update(["dehazelab.train.unpaired", "dehazelab.methods"])
        mods.update(_builder_imports(METHODS[spec["method"]]))
    root = PKG.parent
    files = {str(_file(m).relative_to(root)) for m in _closure(mods)}
    return sorted(files)
