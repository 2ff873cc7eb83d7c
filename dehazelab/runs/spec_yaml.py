"""Reading run specs as YAML (``2e-4`` is a float, duplicate keys are errors) and ``--set KEY=VALUE``
overrides."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .checks import LaunchError, _show

__all__ = ["apply_overrides"]


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading ``2e-4`` as a float (YAML 1.2) and refusing duplicate keys."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            dup = key in out
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark) from None
        if dup:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_load(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise LaunchError(f"{where}: not valid YAML: {e}") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str], source: str = "<run spec>") -> dict[str, Any]:
    """A deep copy of ``raw`` with ``KEY.SUB=VALUE`` overrides applied (values parsed as YAML).

    Missing intermediate mappings are created; under ``data``, a set given by name (``train:
    sots-train``) becomes ``{name: sots-train}`` so its keys can be overridden.
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise LaunchError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.steps=10")
        value = _yaml_load(text, f"--set {item!r}") if text.strip() else None
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif isinstance(nxt, str) and parts[0] == "data" and i >= 1:
                nxt = node[p] = {"name": nxt}
            elif not isinstance(nxt, dict):
                raise LaunchError(f"{source} (--set {key}): {'.'.join(parts[: i + 1])} is {_show(nxt)}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out
